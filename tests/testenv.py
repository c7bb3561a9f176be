"""Loaded with `-p tests.testenv` (pytest.ini) before Django's settings: the test environment.

Production-like settings (DEBUG off), minus what needs TLS, which the test servers do not have.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
# A queue name of our own, so tasks of another run sharing the Redis server are never taken.
os.environ.setdefault("Q_CLUSTER_NAME", f"flashnotify-test-{os.getpid()}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"flashnotify-test-{os.getpid()}")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Transactional tests end with `flush`: it may empty the compliance ledger of a test database.
os.environ.setdefault("LEDGER_FLUSH_ALLOWED", "true")
# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
