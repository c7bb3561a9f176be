"""Emergency alert benchmark: one security alert to N students on email + SMS + push + inbox.

    .venv/bin/python bench/alert.py [--recipients 50000] [--workers 2] [--chunk 500] [--database fn_alert]

The issue's figure: the time until every delivery is handed to its provider (the SMTP server took
the email, the Twilio-like API and the push service answered, the inbox row is written), with each
channel's rate against its peer's raw rate measured in the same run. It uses bench/fanout.py's
pieces: the local peers in a process of their own (aiosmtpd, HTTP servers standing in for Twilio's
API and a push service), their raw rates (one client, back to back; the inbox's: a bulk insert),
its own database (PostgreSQL `--database` with a PostgreSQL DATABASE_URL, else a scratch SQLite
file; Redis keys of its own prefix with REDIS_URL) and real `qcluster` workers. While the alert
goes out it asks the peers every 0.2 s how many distinct messages each has, and notes when each
channel has all of them. It ends with one line:

    alert: <n> deliveries to <r> recipients handed to providers in <s> s; email <s> s <rate>/s of raw <rate>/s (<x>); sms ...; push ...; inbox ...; lost 0; duplicates 0; worker peak RSS <MB> MB
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BASE_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BENCH_DIR))

import fanout  # noqa: E402  (peers, raw rates, database, recipients and worker helpers)

CHANNELS = ("email", "sms", "push", "inbox")


def second_admin(sender):
    """An administrator other than the sender, to approve the alert."""
    from django.contrib.auth.models import Group

    from accounts.models import Role, User

    approver, _ = User.objects.get_or_create(username="bench-approver", defaults={
        "email": "approver@example.edu", "is_superuser": True, "is_staff": True})
    approver.groups.add(Group.objects.get(name=Role.ADMIN))
    assert approver.pk != sender.pk
    return approver


def send_alert(notification_args, recipients, control, cluster, timeout):
    """Send the alert; return the seconds until each channel had every message, and lost/duplicates/RSS."""
    from django.db.models import Count

    from notifications.models import Delivery, InboxMessage, Notification
    from notifications.services import notification_approve, notification_send

    rss, stop = [0.0], threading.Event()

    def watch_rss():
        while not stop.is_set():
            rss[0] = max(rss[0], fanout.peak_rss_mb(cluster.pid))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch_rss, daemon=True)
    watcher.start()
    # A free-text alert drafted by a person waits for a second person (EMERGENCY_TWO_PERSON_RULE): a second
    # administrator approves it, and the clock starts when the approval hands it to the fan-out.
    notification, _ = notification_send(**notification_args)
    started, cpu_before = time.monotonic(), fanout.cpu_seconds(cluster.pid)
    if notification.status == Notification.Status.AWAITING_APPROVAL:
        notification_approve(notification, by=second_admin(notification_args["sender"]))
    handed, counts = {}, {}
    deadline = started + timeout
    while True:
        now = time.monotonic()
        control.send("stats")
        counts = {channel: tuple(value) for channel, value in control.recv().items()}
        if "inbox" not in handed:
            inbox = InboxMessage.objects.filter(notification=notification).count()
            counts["inbox"] = (inbox, inbox)
        for channel in CHANNELS:
            if channel not in handed and channel in counts and counts[channel][1] >= recipients:
                handed[channel] = now - started
        if len(handed) == len(CHANNELS):
            break
        if now > deadline:
            statuses = dict(Delivery.objects.filter(notification=notification).values_list("status")
                            .annotate(Count("id")))
            raise SystemExit(f"timed out after {timeout:g} s: handed {handed}, peers {counts}, deliveries {statuses}")
        time.sleep(0.2)
    cpu = fanout.cpu_report(cpu_before, fanout.cpu_seconds(cluster.pid), max(handed.values()))
    while not Notification.objects.filter(pk=notification.pk, status__in=Notification.FINAL_STATUSES).exists():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the alert's final status")
        time.sleep(0.2)
    stop.set()
    watcher.join()
    rss[0] = max(rss[0], fanout.peak_rss_mb(cluster.pid))
    control.send("stats")
    final = {channel: tuple(value) for channel, value in control.recv().items()}
    final["inbox"] = (InboxMessage.objects.filter(notification=notification).count(),) * 2
    statuses = dict(Delivery.objects.filter(notification=notification).values_list("status").annotate(Count("id")))
    if set(statuses) - {"sent"}:
        print(f"delivery statuses: {statuses}", file=sys.stderr)
    lost = sum(recipients - final[c][1] for c in CHANNELS)
    duplicates = sum(final[c][0] - final[c][1] for c in CHANNELS)
    return handed, lost, duplicates, rss[0], cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("Q_WORKERS", 2)))
    parser.add_argument("--chunk", type=int, default=int(os.environ.get("FANOUT_CHUNK_SIZE", 500)))
    parser.add_argument("--database", default="fn_alert", help="PostgreSQL database to create and drop")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--latency-ms", type=float, default=0,
                        help="each peer waits this long before it answers, as a real provider's API does")
    args = parser.parse_args()
    if args.latency_ms:
        os.environ["BENCH_PEER_LATENCY_MS"] = str(args.latency_ms)

    with fanout.bench_run(args, list(CHANNELS), "fn-alert") as (control, cluster, notification_args, limits):
        notification_args.update(notifier="security", category="security", priority="urgent",
                                 title="Campus lockdown",
                                 body="Stay indoors and away from windows until the all-clear.",
                                 data={"severity": "critical", "location": "Main campus"})
        handed, lost, duplicates, rss, cpu = send_alert(notification_args, args.recipients, control, cluster, args.timeout)
        total = max(handed.values())
        parts = []
        for channel in CHANNELS:
            rate = args.recipients / handed[channel]
            parts.append(f"{channel} {handed[channel]:.2f} s {rate:.0f}/s of raw {limits[channel]:.0f}/s "
                         f"({rate / limits[channel]:.2f})")
        print(f"alert: {args.recipients * len(CHANNELS)} deliveries to {args.recipients} recipients handed to "
              f"providers in {total:.2f} s; {'; '.join(parts)}; lost {lost}; duplicates {duplicates}; "
              f"worker peak RSS {rss:.0f} MB")
        external = args.recipients * 3
        print(f"peers together: one client per peer at once took {limits['together']:.0f} messages/s; at that rate "
              f"the alert's {external} email, SMS and push messages take {external / limits['together']:.1f} s, "
              f"the floor on this machine (the pipeline handed them in "
              f"{max(handed[c] for c in ('email', 'sms', 'push')):.1f} s)")
        print(cpu)


if __name__ == "__main__":
    main()
