"""gunicorn settings for FlashNotify: `gunicorn --config deploy/gunicorn.conf.py` from the project folder.

Every value comes from the environment, with a default that suits one machine behind nginx.
"""

import os

wsgi_app = "flashnotify.wsgi:application"

# nginx (deploy/nginx/flashnotify.conf) proxies to this address; the container binds 0.0.0.0:8000.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# WEB_CONCURRENCY is gunicorn's own variable for the number of worker processes.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1))
threads = int(os.environ.get("GUNICORN_THREADS", 1))
# A request taking longer than this kills its worker; the API answers in milliseconds, sending is the queue's job.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
# On SIGTERM (systemd stop, docker stop), requests in flight get this long to finish.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 20))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))
# Restart each worker after this many requests (with jitter), bounding any slow leak; 0: never.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 1000))
max_requests_jitter = max_requests // 10

# "-" is standard output (journald, docker logs); a path writes a file; empty turns the access log off.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The client address is the socket's; Django trusts X-Forwarded-* only as BEHIND_TLS_PROXY and API_NUM_PROXIES say.
access_log_format = '%(h)s "%({x-forwarded-for}i)s" %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# The app is loaded in each worker (no preload_app), so no database connection is shared by a fork;
# a misconfiguration (flashnotify.E001, ...) stops every worker at boot, and gunicorn exits with it.
