"""Throughput and latency of the API under gunicorn, with real concurrent HTTP clients.

    .venv/bin/python bench/api.py [--clients 20] [--seconds 5] [--workers 3]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fn_api_bench REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/api.py

Builds a fresh database (a temporary SQLite file, or the PostgreSQL database named in
DATABASE_URL, dropped and created again), a 500-member cohort and a student with an inbox,
serves the app with gunicorn, and measures, in the same run, with `--clients` concurrent
aiohttp clients each sending requests back to back:

    GET  /api/v1/health/          the trivial endpoint (the reference)
    GET  /api/v1/me/inbox/        a student's inbox page
    POST /api/v1/notifications/   a notification to the 500-member cohort (accepted and queued only)

One line per endpoint: requests/s, p50 and p99 latency, and the rate's ratio to the trivial
endpoint's. Targets (issue 6): inbox ≥ 0.5 of the trivial rate; POST p99 < 100 ms at 20 clients.
"""

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_environment(var_dir):
    env = {
        "DEBUG": "false", "SECRET_KEY": "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "0", "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{var_dir}/bench.sqlite3", "Q_CLUSTER_NAME": f"flashnotify-bench-{os.getpid()}",
        "CACHE_KEY_PREFIX": f"flashnotify-bench-{os.getpid()}",
        # The bench measures the endpoints, not the throttles' refusals.
        "API_THROTTLE_USER": "1000000/min", "API_THROTTLE_ANON": "1000000/min", "DB_CONN_MAX_AGE": "60",
    }
    for name, value in env.items():
        os.environ.setdefault(name, value)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        name = urlparse(url).path.lstrip("/")
        admin_url = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(members=500, inbox_messages=60):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashnotify.settings")
    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import Cohort, Role, User
    from notifications.models import InboxMessage
    from notifications.models import Notification

    call_command("migrate", verbosity=0)
    if not os.environ.get("REDIS_URL"):
        call_command("createcachetable", verbosity=0)
    password = make_password(None)
    User.objects.bulk_create([User(username=f"b{n:07d}", email=f"b{n}@students.example.edu", password=password)
                              for n in range(members)])
    students = list(User.objects.filter(username__startswith="b"))
    Group.objects.get(name=Role.USER).user_set.add(*students)
    staff = User.objects.create_user("t9000001", password="unused", is_staff=True)
    staff.groups.add(Group.objects.get(name=Role.STAFF))
    cohort = Cohort.objects.create(code="bench-500", name="Bench cohort")
    cohort.members.add(*students)
    cohort.managers.add(staff)
    reader = students[0]
    notifications = Notification.objects.bulk_create([
        Notification(notifier="academic", category="announcement", title=f"Announcement {n}", body="Body " * 40,
                     audience={"cohorts": [cohort.code]}, channels=["inbox"], sender=staff, status="sent")
        for n in range(inbox_messages)])
    InboxMessage.objects.bulk_create([
        InboxMessage(notification=n, recipient=reader, title=n.title, body=n.body, category=n.category,
                     read_at=None if i % 3 else n.created_at) for i, n in enumerate(notifications)])
    from django.db import connections

    connections.close_all()
    return (str(RefreshToken.for_user(staff).access_token), str(RefreshToken.for_user(reader).access_token))


def start_gunicorn(port, workers):
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "flashnotify.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--log-level", "warning"],
        cwd=ROOT, env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not start")


async def load(session, method, url, *, headers, body, clients, seconds, rate=None):
    """`clients` concurrent clients, back to back, or (with `rate`) paced to `rate` requests/s in all."""
    latencies, errors = [], []
    stop_at = time.perf_counter() + seconds

    async def client(index):
        interval = clients / rate if rate else 0
        next_start = time.perf_counter() + index * interval / clients
        while time.perf_counter() < stop_at:
            if interval:
                await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
                next_start += interval
            started = time.perf_counter()
            async with session.request(method, url, headers=headers, json=body) as response:
                await response.read()
                if response.status >= 300:
                    errors.append(response.status)
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors, time.perf_counter() - began


async def measure(base, staff_token, reader_token, clients, seconds, post_rate):
    import aiohttp

    body = {"notifier": "academic", "title": "Lecture moved", "body": "Tomorrow's lecture moves to B12.",
            "category": "timetable", "channels": ["email", "inbox"], "audience": {"cohorts": ["bench-500"]}}
    endpoints = [
        ("GET", "/api/v1/health/", {}, None),
        ("GET", "/api/v1/me/inbox/", {"Authorization": f"Bearer {reader_token}"}, None),
        ("POST", "/api/v1/notifications/", {"Authorization": f"Bearer {staff_token}"}, body),
    ]
    results = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        for method, path, headers, payload in endpoints:
            await load(session, method, base + path, headers=headers, body=payload, clients=clients,
                       seconds=min(1.0, seconds))  # warm-up
            latencies, errors, elapsed = await load(session, method, base + path, headers=headers, body=payload,
                                                    clients=clients, seconds=seconds)
            results.append((method, path, latencies, errors, elapsed))
        if post_rate:
            method, path, headers, payload = endpoints[-1]
            latencies, errors, elapsed = await load(session, method, base + path, headers=headers, body=payload,
                                                    clients=clients, seconds=seconds, rate=post_rate)
            results.append((method, f"{path} @{post_rate:g}/s", latencies, errors, elapsed))
    return results


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--post-rate", type=float, default=50,
                        help="also measure POST notifications/ paced to this many requests/s in all (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flashnotify-bench-") as var_dir:
        prepare_environment(var_dir)
        staff_token, reader_token = seed()
        port = free_port()
        server = start_gunicorn(port, args.workers)
        try:
            results = asyncio.run(measure(f"http://127.0.0.1:{port}", staff_token, reader_token, args.clients,
                                          args.seconds, args.post_rate))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    cache = "Redis" if os.environ.get("REDIS_URL") else "database cache"
    print(f"{args.clients} clients, {args.seconds:g} s per endpoint, gunicorn {args.workers} sync workers, "
          f"{database}, {cache}, {os.cpu_count()} CPUs")
    reference = None
    for method, path, latencies, errors, elapsed in results:
        rate = len(latencies) / elapsed
        reference = reference or rate
        line = (f"{method:4} {path:34} {rate:8.1f} req/s  p50 {statistics.median(latencies) * 1000:6.1f} ms  "
                f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms  ratio {rate / reference:4.2f}")
        if errors:
            line += f"  ({len(errors)} errors, e.g. HTTP {errors[0]})"
        print(line)


if __name__ == "__main__":
    main()
