"""Scale-out proof: several web and worker nodes on one PostgreSQL and one Redis, with faults.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/scaleout.py [--recipients 10000] [--web 2] [--nodes 3] [--workers 1]
                                           [--channels email,inbox] [--no-kill] [--no-redis-restart]

Each node is a process of its own, started from its own working directory (var/scaleout-<pid>/<node>)
with its own environment, as on separate machines that share the database and Redis: `--web` gunicorn
servers and `--nodes` `qcluster`s (`--workers` processes each). The notification is sent through the
API of the first web node with an API key, and its progress read through the API of the last one.
Once a third of the deliveries are sent, one worker node is killed with SIGKILL (its whole process
group, as a machine that dies), and Redis is restarted (shut down without saving, then started
again with the command of shared/ENVIRONMENT.md): every queued task and the delayed set are lost
with it. The run then waits until every delivery is final and counts at the peers:

    scaleout: <n> deliveries to <r> recipients in <s> s; lost 0; duplicates <d> (recorded as possible <p>); ...

Lost must be 0: the sweep takes back the killed node's claimed deliveries after their lease and
enqueues again what Redis lost after DELIVERY_STALE_SECONDS (both shortened for the run, see
NODE_ENV). Duplicates are bounded by the recording window of the killed node's workers. It creates
and drops its own PostgreSQL database (`--database`, default fn_scaleout) and deletes its Redis keys.
Run it by hand on a quiet machine; never in tests.
"""

import argparse
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

import fanout  # noqa: E402  (the peers, the database and the recipients of the fan-out benchmark)

REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]

# Shortened recovery delays, so a run ends in minutes: a killed node's claims come back after the
# lease, a task Redis lost is enqueued again after DELIVERY_STALE_SECONDS (the sweep runs each minute).
NODE_ENV = {"Q_TIMEOUT": "40", "DELIVERY_TASK_SECONDS": "15", "DELIVERY_LEASE_SECONDS": "60",
            "DELIVERY_STALE_SECONDS": "30"}


class Node:
    """One process group started from its own directory with its own environment."""

    def __init__(self, name, command, env, root):
        self.name, self.command, self.env = name, command, env
        self.directory = root / name
        self.directory.mkdir(parents=True)
        self.log = open(self.directory / "output.log", "wb")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(self.command, cwd=self.directory, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if self.process:
            self.kill()
        self.log.close()


def api(port, method, path, key, body=None):
    import requests

    response = requests.request(method, f"http://127.0.0.1:{port}/api/v1/{path}", json=body, timeout=30,
                                headers={"Authorization": f"Api-Key {key}", "Host": "notify.example.edu",
                                         "X-Forwarded-Proto": "https"})
    response.raise_for_status()
    return response.json()


def wait_until(predicate, timeout, message, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {message}")


def restart_redis(url):
    import redis

    client = redis.from_url(url)
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it stops
    wait_until(lambda: subprocess.run(["redis-cli", "ping"], capture_output=True).returncode != 0, 10,
               "Redis to stop")
    started = time.monotonic()
    subprocess.run(REDIS_START, check=True, capture_output=True)
    wait_until(lambda: subprocess.run(["redis-cli", "ping"], capture_output=True).stdout.strip() == b"PONG", 10,
               "Redis to answer again")
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--channels", default="email,inbox")
    parser.add_argument("--web", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per qcluster node")
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--database", default="fn_scaleout")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker node")
    parser.add_argument("--no-redis-restart", action="store_true", help="do not restart Redis")
    args = parser.parse_args()
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")) \
            or not os.environ.get("REDIS_URL"):
        parser.error("set DATABASE_URL to a PostgreSQL server and REDIS_URL: the nodes share them")
    if not args.no_redis_restart and not shutil.which("redis-server"):
        parser.error("redis-server is not on PATH: cannot restart Redis (use --no-redis-restart)")

    control, peer_end = multiprocessing.get_context("fork").Pipe()
    peers = multiprocessing.get_context("fork").Process(target=fanout.serve_peers, args=(peer_end,), daemon=True)
    peers.start()
    ports = control.recv()
    database_url, drop_database = fanout.make_database(args)
    prefix = f"fn-scaleout-{os.getpid()}"
    vapid = fanout.vapid_keys()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "flashnotify.settings", "DATABASE_URL": database_url, "DEBUG": "false",
        "SECRET_KEY": "scaleout-secret-key-" + "x" * 40, "SITE_URL": "https://notify.example.edu",
        "ALLOWED_HOSTS": "notify.example.edu", "BEHIND_TLS_PROXY": "true",
        "Q_CLUSTER_NAME": prefix, "CACHE_KEY_PREFIX": prefix, "Q_WORKERS": str(args.workers),
        "FANOUT_CHUNK_SIZE": str(args.chunk), "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(ports["smtp"]),
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "bench-token",
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "2" * 32, "TWILIO_API_BASE": f"http://127.0.0.1:{ports['twilio']}",
        "VAPID_PUBLIC_KEY": vapid[0], "VAPID_PRIVATE_KEY": vapid[1], "PUSH_ALLOW_HTTP_ENDPOINTS": "true",
        "API_THROTTLE_USER": "100000/min", **NODE_ENV,
    })
    root = BASE_DIR / "var" / prefix
    nodes = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from accounts.services import api_key_create

        call_command("migrate", verbosity=0)
        notification_args, _ = fanout.prepare(args.recipients, channels, ports)
        _, key = api_key_create(user=notification_args["sender"], name="scale-out", scopes=["send", "read_deliveries"])
        python = sys.executable
        web_ports = [fanout.free_port() for _ in range(args.web)]
        for n, port in enumerate(web_ports, 1):
            nodes.append(Node(f"web-{n}", [python, "-m", "gunicorn", "--pythonpath", str(BASE_DIR), "--workers", "2",
                                           "--bind", f"127.0.0.1:{port}", "flashnotify.wsgi"],
                              {**os.environ, "NODE_NAME": f"web-{n}"}, root).start())
        workers = [Node(f"worker-{n}", [python, str(BASE_DIR / "manage.py"), "qcluster"],
                        {**os.environ, "NODE_NAME": f"worker-{n}", "Q_CLUSTER_NAME": prefix}, root).start()
                   for n in range(1, args.nodes + 1)]
        nodes.extend(workers)
        fanout.wait_for_workers()
        for port in web_ports:
            wait_until(lambda port=port: _answers(port), 60, f"the web node on {port}")

        from django.db.models import Count

        from notifications.models import Delivery, Notification

        started = time.time()
        sent = api(web_ports[0], "POST", "notifications/", key, {
            "notifier": "academic", "category": "announcement", "title": notification_args["title"],
            "body": notification_args["body"], "audience": {"cohorts": ["bench"]}, "channels": channels})
        notification_id = sent["id"]
        expected = args.recipients * len(channels)
        deliveries = Delivery.objects.filter(notification_id=notification_id)
        events = []
        if not (args.no_kill and args.no_redis_restart):
            wait_until(lambda: deliveries.filter(status="sent").count() >= expected // 3, args.timeout,
                       "a third of the deliveries sent", interval=0.05)
        if not args.no_kill:
            victim = workers[len(workers) // 2]
            in_flight = deliveries.filter(status="sending").count()
            victim.kill()
            events.append(f"killed {victim.name} (SIGKILL, whole group) at {time.time() - started:.1f} s "
                          f"with {in_flight} deliveries claimed by all nodes")
        if not args.no_redis_restart:
            at = time.time() - started
            down = restart_redis(os.environ["REDIS_URL"])
            events.append(f"restarted Redis at {at:.1f} s (back in {down:.1f} s, its queue lost)")
        for event in events:
            print(event, file=sys.stderr)

        def final():
            body = api(web_ports[-1], "GET", f"notifications/{notification_id}/", key)
            return body["status"] in {s.value if hasattr(s, "value") else s for s in Notification.FINAL_STATUSES}

        wait_until(final, args.timeout, "the notification to finish (read through the last web node)", interval=1)
        notification = Notification.objects.get(pk=notification_id)
        seconds = notification.completed_at.timestamp() - started
        statuses = dict(deliveries.values_list("status").annotate(Count("id")))
        control.send("stats")
        received = control.recv()
        from notifications.models import InboxMessage

        lost = duplicates = 0
        for channel in channels:
            if channel == "inbox":
                got = distinct = InboxMessage.objects.filter(notification_id=notification_id).count()
            else:
                got, distinct = received[channel]
            lost += args.recipients - distinct
            duplicates += got - distinct
        possible = deliveries.filter(reclaims__gt=0, status__in=["sent", "delivered"]).count()
        print(f"delivery statuses: {statuses}", file=sys.stderr)
        print(f"scaleout: {deliveries.count()} deliveries to {args.recipients} recipients in {seconds:.1f} s "
              f"({args.web} web nodes, {args.nodes} worker nodes × {args.workers}); lost {lost}; "
              f"duplicates {duplicates} (recorded as possible {possible}); "
              + ("; ".join(events) if events else "no faults"))
        if lost or set(statuses) - {"sent", "delivered", "skipped"}:
            raise SystemExit(1)
    finally:
        for node in nodes:
            node.stop()
        control.send("stop")
        peers.join(10)
        from django.db import connections

        connections.close_all()
        drop_database()
        fanout.clean_redis(prefix)
        shutil.rmtree(root, ignore_errors=True)


def _answers(port):
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=2,
                            headers={"Host": "notify.example.edu", "X-Forwarded-Proto": "https"}).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
