"""Benchmark: `send_batch` of N personalised CSV rows, delivered by real workers to a local SMTP server.

Prints deliveries per second from the command's start until no delivery is pending, and, with
--compare, the same for one plain notification to the same people (the fan-out path), so the
two can be compared (issue 7: within 20%).

    DATABASE_URL=sqlite:///var/bench.sqlite3 .venv/bin/python bench/send_batch.py --rows 20000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fn_bench REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/send_batch.py --rows 20000 --compare

It creates N users named bench000001… in that database (kept between runs) and deletes the
notifications it sends. Use a database of its own, never production.
"""

import argparse
import os
import signal
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashnotify.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("ALLOWED_HOSTS", "localhost")
os.environ.setdefault("SECRET_KEY", "bench-only-" + __import__("secrets").token_urlsafe(40))
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("Q_CLUSTER_NAME", f"flashnotify-bench-{os.getpid()}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"flashnotify-bench-{os.getpid()}")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts.models import Cohort, Role, User  # noqa: E402
from notifications.models import Delivery, Notification  # noqa: E402
from notifications.services import notification_send  # noqa: E402
from tests.peers import SMTPPeer, Worker, wait_until  # noqa: E402


def ensure_users(count):
    existing = User.objects.filter(username__startswith="bench").count()
    if existing < count:
        User.objects.bulk_create([
            User(username=f"bench{n:06d}", email=f"bench{n:06d}@bench.example.edu", first_name=f"B{n}")
            for n in range(existing, count)
        ], batch_size=2000)
    users = list(User.objects.filter(username__startswith="bench").order_by("username")[:count])
    cohort, _ = Cohort.objects.get_or_create(code=f"bench-{count}", defaults={"name": "bench"})
    if cohort.members.count() != count:
        cohort.members.set(users)
    Group.objects.get(name=Role.USER)
    return users, cohort


def drain(label, rows, started, peer, worker):
    def done():
        if worker.process.poll() is not None:
            raise SystemExit(f"the workers stopped:\n{worker.output()[-2000:]}")
        return (Notification.objects.filter(fanned_out_at__isnull=False).exists()
               and not Delivery.objects.filter(status__in=Delivery.PENDING_STATUSES).exists()
                and Notification.objects.filter(fanned_out_at__isnull=True).count() == 0)

    wait_until(done, timeout=3600, interval=0.25, message=f"{label} done")
    elapsed = time.perf_counter() - started
    sent = Delivery.objects.filter(status="sent").count()
    print(f"{label}: {sent} deliveries sent ({len(peer.messages)} emails received) in {elapsed:.1f}s "
          f"= {sent / elapsed:,.0f} deliveries/s", flush=True)
    return sent / elapsed


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the workers
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="Also time one notification to the same cohort.")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    users, cohort = ensure_users(args.rows)
    Notification.objects.all().delete()
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as handle:
        handle.write("username,first_name,grade\n")
        handle.writelines(f"{u.username},{u.first_name},{i % 20}\n" for i, u in enumerate(users))
    peer = SMTPPeer().start()
    worker = Worker(EMAIL_HOST="127.0.0.1", EMAIL_PORT=peer.port, Q_WORKERS=args.workers, DEBUG="false").start()
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = "redis" if settings.Q_CLUSTER.get("redis") else "orm"
    print(f"{args.rows} rows, {args.workers} workers, {db}, {broker} broker, chunk {settings.FANOUT_CHUNK_SIZE}",
          flush=True)
    try:
        time.sleep(3)  # let the cluster start
        started = time.perf_counter()
        call_command("send_batch", handle.name, "--category", "grade", "--channels", "email",
                     "--title", "Your grade", "--body", "Dear {{ first_name }}, your grade is {{ grade }}.",
                     "--idempotency-key", f"bench-{time.time()}", stdout=StringIO())
        batch_rate = drain("send_batch (personalised CSV)", args.rows, started, peer, worker)
        if args.compare:
            Notification.objects.all().delete()
            peer.messages.clear()
            started = time.perf_counter()
            notification_send(sender=None, notifier="academic", category="grade", channels=["email"],
                              title="Your grade", body="Grades are out.", audience={"cohorts": [cohort.code]})
            fanout_rate = drain("fan-out (one notification to a cohort)", args.rows, started, peer, worker)
            print(f"send_batch / fan-out = {batch_rate / fanout_rate:.0%}")
    finally:
        worker.stop()
        peer.stop()
        os.unlink(handle.name)
        Notification.objects.all().delete()


if __name__ == "__main__":
    main()
