"""Provider rate limit benchmark: is a configured rate honoured by every worker together?

    .venv/bin/python bench/ratelimit.py [--rate 50] [--seconds 30] [--clusters 2] [--workers 2] [--database fn_rate]

It starts an aiosmtpd server (in this process) that notes when each message arrives, creates its own
database (as bench/fanout.py does: PostgreSQL `--database` when DATABASE_URL is a PostgreSQL URL,
else a scratch SQLite file; Redis keys of its own prefix with REDIS_URL), starts `--clusters`
`qcluster` processes of `--workers` workers each with EMAIL_RATE_LIMIT=`--rate`, and emails one
notification to enough recipients to keep them busy past `--seconds`. The observed rate is what
arrived in the `--seconds` after the first message (the first second holds the limiter's
one-second burst), and again from the second second on (the steady rate). Lost and duplicated
messages are counted once every delivery is final. It ends with one line:

    ratelimit: configured <r>/s; observed <r>/s over <s> s (ratio <x>); steady <r>/s (ratio <x>); busiest second <n>; lost 0; duplicates 0
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BASE_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BENCH_DIR))

import fanout  # noqa: E402  (the fan-out benchmark's database, recipients and worker helpers)


class TimingSMTPPeer:
    """An aiosmtpd server noting each message's Message-ID and arrival (time.monotonic())."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.lock = threading.Lock()
        self.arrivals, self.ids = [], Counter()
        message_id = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
        peer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                found = message_id.search(envelope.content)
                with peer.lock:
                    peer.arrivals.append(time.monotonic())
                    peer.ids[found.group(1) if found else b"?"] += 1
                return "250 Message accepted"

        self.port = fanout.free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


def observed(arrivals, start, seconds):
    """Messages per second that arrived in [start, start + seconds)."""
    return sum(1 for t in arrivals if start <= t < start + seconds) / seconds


def busiest_second(arrivals):
    """Most messages in any one-second window that starts at an arrival."""
    arrivals, best, j = sorted(arrivals), 0, 0
    for i, t in enumerate(arrivals):
        while arrivals[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50, help="EMAIL_RATE_LIMIT, messages per second")
    parser.add_argument("--seconds", type=float, default=30, help="how long the observed window lasts")
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes")
    parser.add_argument("--workers", type=int, default=2, help="workers per qcluster")
    parser.add_argument("--chunk", type=int, default=int(os.environ.get("FANOUT_CHUNK_SIZE", 500)))
    parser.add_argument("--database", default="fn_rate", help="PostgreSQL database to create and drop")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    recipients = int(args.rate * (args.seconds + 4))  # enough to keep the workers busy past the window

    peer = TimingSMTPPeer().start()
    database_url, drop_database = fanout.make_database(args)
    prefix = f"fn-rate-{os.getpid()}"
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "flashnotify.settings", "DATABASE_URL": database_url, "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-" + "x" * 40, "SITE_URL": "https://notify.example.edu",
        "ALLOWED_HOSTS": "notify.example.edu", "Q_CLUSTER_NAME": prefix, "CACHE_KEY_PREFIX": prefix,
        "Q_WORKERS": str(args.workers), "FANOUT_CHUNK_SIZE": str(args.chunk),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(peer.port), "EMAIL_RATE_LIMIT": f"{args.rate:g}",
    })
    clusters = []
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db.models import Count

        from notifications.models import Delivery, Notification
        from notifications.services import notification_send

        call_command("migrate", verbosity=0)
        if not os.environ.get("REDIS_URL"):
            call_command("createcachetable", verbosity=0)
        for _ in range(args.clusters):
            clusters.append(subprocess.Popen([sys.executable, str(BASE_DIR / "manage.py"), "qcluster"], cwd=BASE_DIR,
                                             env=os.environ.copy(), start_new_session=True))
        notification_args, _ = fanout.prepare(recipients, ["email"], {})
        fanout.wait_for_workers()
        notification, _ = notification_send(**notification_args)
        deadline = time.monotonic() + args.timeout
        while not Notification.objects.filter(pk=notification.pk, status__in=Notification.FINAL_STATUSES).exists():
            if time.monotonic() > deadline:
                statuses = dict(Delivery.objects.values_list("status").annotate(Count("id")))
                raise SystemExit(f"timed out: {statuses}")
            time.sleep(0.2)
        statuses = dict(Delivery.objects.filter(notification=notification).values_list("status")
                        .annotate(Count("id")))
        with peer.lock:
            arrivals, ids = sorted(peer.arrivals), Counter(peer.ids)
        if not arrivals:
            raise SystemExit(f"nothing arrived: {statuses}")
        first, last = arrivals[0], arrivals[-1]
        if last - first < args.seconds + 1:
            print(f"warning: the run lasted {last - first:.1f} s, less than the window and its first second",
                  file=sys.stderr)
        rate, steady = observed(arrivals, first, args.seconds), observed(arrivals, first + 1, args.seconds)
        lost = recipients - len(ids)
        duplicates = sum(ids.values()) - len(ids)
        if set(statuses) != {"sent"}:
            print(f"delivery statuses: {statuses}", file=sys.stderr)
        per_second = Counter(int(t - first) for t in arrivals)
        print("per second: " + " ".join(str(per_second[n]) for n in range(int(last - first) + 1)), file=sys.stderr)
        print(f"{recipients} emails in {last - first:.1f} s through {args.clusters} qclusters x {args.workers} workers",
              file=sys.stderr)
        print(f"ratelimit: configured {args.rate:g}/s; observed {rate:.1f}/s over {args.seconds:g} s "
              f"(ratio {rate / args.rate:.3f}); steady {steady:.1f}/s (ratio {steady / args.rate:.3f}); "
              f"busiest second {busiest_second(arrivals)}; lost {lost}; duplicates {duplicates}")
    finally:
        for cluster in clusters:
            if cluster.poll() is None:
                cluster.send_signal(signal.SIGTERM)
        for cluster in clusters:
            try:
                cluster.wait(30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(cluster.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        peer.stop()
        from django.db import connections

        connections.close_all()
        drop_database()
        fanout.clean_redis(prefix)


if __name__ == "__main__":
    main()
