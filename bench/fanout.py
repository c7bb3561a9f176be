"""Fan-out benchmark: one notification to N recipients through the whole pipeline.

    .venv/bin/python bench/fanout.py [--recipients 10000] [--channels email] [--workers 2] [--chunk 500]
                                     [--opt-out-half] [--scale-from N] [--database fn_bench]

It starts real local peers in a process of their own (an aiosmtpd server, and HTTP
servers on 127.0.0.1 standing in for Twilio's API and a push service), measures each
peer's raw rate (the limit) in the same run, creates its own database (PostgreSQL
`fn_bench` when DATABASE_URL is a PostgreSQL URL, else a scratch SQLite file), starts real
`qcluster` workers, sends one notification and waits until every delivery is final. It
drops its database and its Redis keys at the end, and ends with one line:

    fanout: <deliveries> deliveries in <s> s = <rate>/s; limit <rate>/s; ratio <x>; lost 0; duplicates <n>; worker peak RSS <MB> MB

The limit of a run on several channels is the rate at which one client would pass all its
deliveries through each peer in turn at that peer's raw rate; the inbox's limit is the raw
rate of a bulk insert of inbox rows. Run it by hand on a quiet machine; never in tests.

Each channel's own rate (its deliveries until its last was sent) and its ratio to that channel's
raw rate are printed on stderr before that line, so `--channels sms` or `--channels push`
measures one channel against its peer, and a run on several channels shows each one.

With --scale-from N, it first sends to the first N recipients only, then to all, and compares the
time a delivery takes (and the workers' peak RSS) between the two, in the same run:

    scale: <ms> ms a delivery at <N> recipients (...) vs <ms> ms at <recipients>; ratio <x>; worker peak RSS ...

With --opt-out-half, half the audience (every other recipient) has turned the category off on
every channel sent, and the run sends two notifications: first with those opt-outs (their skipped
rows, with reasons, are written in the same bulk inserts as the others), then, opt-outs removed,
to everyone. Before those, it times the planning and writing of every page in its own process,
with the opt-outs on and, alternately, turned back into choices to receive (best of three each).
It ends with both ratios, which should stay near 1 (≤ 1.1): recording why half the audience gets
nothing costs no more than planning to send to them.

    opt-out half, planning in this process (best of 3): <s> s vs <s> s with none opted out; ratio <x>
    opt-out half: fan-out <s> s vs <s> s with none opted out; ratio <x>; skipped rows <n>; until final ...
"""

import argparse
import base64
import contextlib
import functools
import http.server
import json
import multiprocessing
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
CHANNELS = ("email", "sms", "push", "inbox")


# --- the peers, in a process of their own ------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_peers(control):
    """Run the SMTP server and the two HTTP servers; answer `stats`/`reset`/`stop` on `control`."""
    from aiosmtpd.controller import Controller

    import asyncio

    lock = threading.Lock()
    received = {"email": Counter(), "sms": Counter(), "push": Counter()}
    message_id = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
    # A real provider answers in tens or hundreds of milliseconds, not in one: BENCH_PEER_LATENCY_MS makes
    # each peer wait that long before it answers (each connection on its own, as a real API does).
    latency = float(os.environ.get("BENCH_PEER_LATENCY_MS") or 0) / 1000

    class SMTPHandler:
        async def handle_DATA(self, server, session, envelope):
            if latency:
                await asyncio.sleep(latency)
            found = message_id.search(envelope.content)
            with lock:
                received["email"][found.group(1) if found else b"?"] += 1
            return "250 Message accepted"

    smtp_port = free_port()
    smtp = Controller(SMTPHandler(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()

    def http_server(channel, answer):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real API allows
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if latency:
                    time.sleep(latency)
                key = parse_qs(body.decode()).get("To", ["?"])[0] if channel == "sms" else self.path
                with lock:
                    received[channel][key] += 1
                    n = sum(received[channel].values())
                status, payload = answer(n)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # a provider takes many connections at once (the default backlog is 5)

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    twilio = http_server("sms", lambda n: (201, json.dumps({"sid": f"SM{n:032d}", "status": "queued"}).encode()))
    push = http_server("push", lambda n: (201, b""))
    control.send({"smtp": smtp_port, "twilio": twilio.server_address[1], "push": push.server_address[1]})
    while True:
        command = control.recv()
        if command == "stats":
            with lock:
                control.send({channel: (sum(c.values()), len(c)) for channel, c in received.items()})
        elif command == "reset":
            with lock:
                for counter in received.values():
                    counter.clear()
            control.send("ok")
        else:
            break
    smtp.stop()
    twilio.shutdown()
    push.shutdown()
    control.send("stopped")


# --- raw rates (the limits) ----------------------------------------------------------------

def raw_email(notification_args):
    """(recipient address, the bytes of a real email to them, as the email channel builds it)."""
    from accounts.models import User
    from channels_app.base import Message, Recipient
    from channels_app.registry import get_notifier
    from notifications.models import Notification

    notifier = get_notifier("academic")
    user = User.objects.exclude(username="bench-admin").first()
    notification = Notification(pk=1, **{k: v for k, v in notification_args.items() if k in ("title", "body")})
    message = Message(delivery_id=1, channel="email", recipient=Recipient.from_user(user), notification=notification,
                      message_id="<raw@bench>", unsubscribe_url="https://notify.example.edu/unsubscribe/x/")
    message.content = notifier.render(message)
    return user.email, notifier.build_email(message).message().as_bytes(linesep="\r\n")


def raw_smtp_send(port, address, raw, count, tag=b"raw"):
    """Send `count` copies of `raw` over one connection; returns the seconds it took."""
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        started = time.perf_counter()
        for n in range(count):
            copy = raw.replace(b"<raw@bench>", b"<%s-%d@bench>" % (tag, n))
            smtp.sendmail("bench@flashnotify.localhost", [address], copy)
        return time.perf_counter() - started


def raw_smtp_rate(port, notification_args, count=2000):
    """Messages/s of one smtplib client sending pre-built copies of a real email over one connection."""
    address, raw = raw_email(notification_args)
    return count / raw_smtp_send(port, address, raw, count)


def raw_http_rate(url, count=1000, form=None, body=b""):
    import requests

    with requests.Session() as session:
        started = time.perf_counter()
        for n in range(count):
            session.post(url.format(n=n), data=form(n) if form else body, timeout=10).raise_for_status()
        return count / (time.perf_counter() - started)


def raw_together_rate(ports, notification_args, count):
    """Messages/s the three peers take when one client each (a process of its own, as the workers are) sends
    `count` messages to all three at once: what this machine's two cores can hand to the peers at all, the
    floor under an alert on email + SMS + push. Returns (messages/s, seconds)."""
    address, raw = raw_email(notification_args)
    sms = f"http://127.0.0.1:{ports['twilio']}/2010-04-01/Accounts/AC/Messages.json"
    push = f"http://127.0.0.1:{ports['push']}/together/{{n}}"
    jobs = [functools.partial(raw_smtp_send, ports["smtp"], address, raw, count, b"together"),
            functools.partial(raw_http_rate, sms, count, form=lambda n: {"To": f"+together{n}", "Body": "x" * 140}),
            functools.partial(raw_http_rate, push, count, body=b"x" * 300)]
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=job) for job in jobs]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    if any(process.exitcode for process in processes):
        raise SystemExit("a raw client of the three peers failed")
    return 3 * count / seconds, seconds


def raw_inbox_rate(notification, users):
    from django.db import transaction

    from notifications.models import InboxMessage

    rows = [InboxMessage(notification=notification, recipient_id=u, title="raw", body="x" * 200,
                         category=notification.category) for u in users]
    with transaction.atomic():
        started = time.perf_counter()
        InboxMessage.objects.bulk_create(rows, batch_size=1000)
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return len(rows) / elapsed


# --- the database of the run ---------------------------------------------------------------

def make_database(args):
    """Return (DATABASE_URL for the run, cleanup function)."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        parts = urlsplit(url)
        admin_url = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{args.database}"')

        def drop():
            with psycopg.connect(admin_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')

        return urlunsplit(parts._replace(path=f"/{args.database}")), drop
    directory = tempfile.mkdtemp(prefix="fn-bench-", dir=BASE_DIR / "var")
    return f"sqlite:///{directory}/bench.sqlite3", lambda: shutil.rmtree(directory, ignore_errors=True)


def clean_redis(prefix):
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    import redis

    client = redis.from_url(url)
    for pattern in (f"{prefix}*", f"*{prefix}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


# --- workers --------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(cluster_group):
    """CPU seconds (user + system) used so far by each party on this machine: the workers (the qcluster's
    process group), the local peers (this process's other children), PostgreSQL, Redis, this process, and
    everything else. Two readings'
    difference says who used the cores during a run (a process that ended in between is not counted)."""
    parties = dict.fromkeys(("workers", "peers", "postgresql", "redis", "bench", "other"), 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            used = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            parent, group = int(fields[1]), int(fields[2])
        except (OSError, ValueError, IndexError):
            continue
        if group == cluster_group:
            party = "workers"
        elif parent == os.getpid():
            party = "peers"
        elif name.startswith("postgres"):
            party = "postgresql"
        elif name.startswith("redis"):
            party = "redis"
        elif pid == os.getpid():
            party = "bench"
        else:
            party = "other"
        parties[party] += used
    # The machine's own count (/proc/stat): busy and idle CPU seconds of every process, those that ended too
    # (a PostgreSQL backend lives as long as its connection).
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    parties["machine idle"] = (fields[3] + fields[4]) / CLOCK_TICKS
    parties["machine busy"] = (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS
    return parties


def cpu_report(before, after, seconds):
    """One line: each party's share of the CPU time the machine had during `seconds` of wall-clock."""
    available = seconds * (os.cpu_count() or 1)
    used = {party: after[party] - before[party] for party in after}
    busy, idle = used.pop("machine busy"), used.pop("machine idle")
    # What the machine counted busy beyond the processes still alive: ended ones (PostgreSQL backends of
    # closed connections, mostly).
    used["ended processes"] = max(busy - sum(used.values()), 0)
    parts = ", ".join(f"{party} {value:.1f} s" for party, value in used.items())
    return f"CPU during the run ({seconds:.1f} s x {os.cpu_count()} cores = {available:.0f} s): {parts}; idle {idle:.1f} s"


def peak_rss_mb(group):
    """Largest peak RSS (VmHWM) of any process in the process group, in MB."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ProcessLookupError, ValueError):
            continue
    return peak / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--channels", default="email", help=f"comma-separated, of {', '.join(CHANNELS)}")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("Q_WORKERS", 2)))
    parser.add_argument("--chunk", type=int, default=int(os.environ.get("FANOUT_CHUNK_SIZE", 500)))
    parser.add_argument("--database", default="fn_bench", help="PostgreSQL database to create and drop")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--opt-out-half", action="store_true",
                        help="also time a fan-out where half the audience opted out, and compare")
    parser.add_argument("--scale-from", type=int, default=0, metavar="N",
                        help="first send to the first N recipients only, and compare the cost of a delivery")
    args = parser.parse_args()
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not channels or set(channels) - set(CHANNELS):
        parser.error(f"--channels takes a comma-separated list of {', '.join(CHANNELS)}")

    with bench_run(args, channels, "fn-bench") as (control, cluster, notification_args, limits):
        if args.opt_out_half:
            opted_out = opt_out_half(channels)
            planning = compare_planning(notification_args, opted_out, args.chunk)
            halved = run(notification_args, channels, args, control, cluster, opted_out=len(opted_out))
            from notifications.models import Preference

            Preference.objects.filter(user_id__in=opted_out).delete()
            control.send("reset")
            control.recv()
        if args.scale_from:
            small = scale_audience(args.scale_from)
            smaller = run({**notification_args, "audience": {"cohorts": [small]}}, channels,
                          argparse.Namespace(**{**vars(args), "recipients": args.scale_from}), control, cluster)
            control.send("reset")
            control.recv()
        result = run(notification_args, channels, args, control, cluster)
        if args.scale_from:
            per_small = smaller["seconds"] / max(smaller["deliveries"], 1) * 1000
            per_large = result["seconds"] / max(result["deliveries"], 1) * 1000
            print(f"scale: {per_small:.3f} ms a delivery at {args.scale_from} recipients (lost {smaller['lost']}, "
                  f"duplicates {smaller['duplicates']}) vs {per_large:.3f} ms at {args.recipients}; "
                  f"ratio {per_large / per_small:.2f}; worker peak RSS {smaller['rss']:.0f} MB vs {result['rss']:.0f} MB")
        if args.opt_out_half:
            print(f"opt-out half, planning in this process (best of {len(planning['opted_out'])}): "
                  f"{min(planning['opted_out']):.2f} s vs {min(planning['none']):.2f} s with none opted out; "
                  f"ratio {min(planning['opted_out']) / min(planning['none']):.2f}")
            print(f"opt-out half: fan-out {halved['planned']:.2f} s vs {result['planned']:.2f} s with none opted "
                  f"out; ratio {halved['planned'] / result['planned']:.2f}; skipped rows {halved['skipped']}; "
                  f"until final {halved['seconds']:.2f} s vs {result['seconds']:.2f} s")
        rate = result["deliveries"] / result["seconds"]
        expected = args.recipients * len(channels)
        limit = expected / sum(args.recipients / limits[c] for c in channels)
        print("raw rates: " + ", ".join(f"{c} {limits[c]:.0f}/s" for c in channels), file=sys.stderr)
        print("per channel (rate until its last delivery ÷ its raw rate): " + ", ".join(
            f"{c} {result['per_channel'].get(c, 0):.0f}/s ÷ {limits[c]:.0f}/s = "
            f"{result['per_channel'].get(c, 0) / limits[c]:.2f}" for c in channels), file=sys.stderr)
        print(f"fanout: {result['deliveries']} deliveries in {result['seconds']:.2f} s = {rate:.0f}/s; "
              f"limit {limit:.0f}/s; ratio {rate / limit:.2f}; lost {result['lost']}; "
              f"duplicates {result['duplicates']}; worker peak RSS {result['rss']:.0f} MB")


@contextlib.contextmanager
def bench_run(args, channels, name):
    """The set-up every fan-out benchmark shares, torn down whatever happens: the local peers (in a
    process of their own), a database of its own, the settings, a `qcluster`, the recipients and the
    peers' raw rates. Yields (control pipe to the peers, cluster process, notification arguments, raw
    rates per channel), with the workers ready."""
    control, peer_end = multiprocessing.get_context("fork").Pipe()
    peers = multiprocessing.get_context("fork").Process(target=serve_peers, args=(peer_end,), daemon=True)
    peers.start()
    ports = control.recv()
    database_url, drop_database = make_database(args)
    prefix = f"{name}-{os.getpid()}"
    vapid = vapid_keys()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "flashnotify.settings", "DATABASE_URL": database_url, "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-" + "x" * 40, "SITE_URL": "https://notify.example.edu",
        "ALLOWED_HOSTS": "notify.example.edu",
        "Q_CLUSTER_NAME": prefix, "CACHE_KEY_PREFIX": prefix, "Q_WORKERS": str(args.workers),
        "FANOUT_CHUNK_SIZE": str(args.chunk), "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(ports["smtp"]),
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "bench-token",
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "2" * 32, "TWILIO_API_BASE": f"http://127.0.0.1:{ports['twilio']}",
        "VAPID_PUBLIC_KEY": vapid[0], "VAPID_PRIVATE_KEY": vapid[1],
        "PUSH_ALLOW_HTTP_ENDPOINTS": "true",  # the push service is a local http peer
    })
    cluster = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        if not os.environ.get("REDIS_URL"):
            call_command("createcachetable", verbosity=0)
        cluster = subprocess.Popen([sys.executable, str(BASE_DIR / "manage.py"), "qcluster"], cwd=BASE_DIR,
                                   env=os.environ.copy(), start_new_session=True)
        notification_args, users = prepare(args.recipients, channels, ports)
        limits = measure_limits(channels, ports, control, users, notification_args)
        wait_for_workers()
        yield control, cluster, notification_args, limits
    finally:
        if cluster and cluster.poll() is None:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(30)
            except subprocess.TimeoutExpired:
                pass
        if cluster:
            try:
                os.killpg(cluster.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        control.send("stop")
        peers.join(10)
        from django.db import connections

        connections.close_all()
        drop_database()
        clean_redis(prefix)

def vapid_keys():
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from py_vapid import Vapid02, b64urlencode

    vapid = Vapid02()
    vapid.generate_keys()
    return (b64urlencode(vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)),
            b64urlencode(vapid.private_key.private_numbers().private_value.to_bytes(32, "big")))


def prepare(recipients, channels, ports):
    """Create the recipients (and their push subscriptions) in bulk; return the notification's arguments."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Cohort, Role, User
    from channels_app.models import PushSubscription
    from notifications.models import CategoryDefault

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    sender = User.objects.create(username="bench-admin", email="admin@example.edu", is_superuser=True,
                                 is_staff=True)
    sender.groups.add(Group.objects.get(name=Role.ADMIN))
    cohort = Cohort.objects.create(code="bench", name="Benchmark cohort")
    verified = timezone.now()
    # One browser key pair shared by every subscription: the push service stand-in never decrypts.
    p256dh = b64(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint))
    auth = b64(os.urandom(16))
    batch = 5000
    for start in range(0, recipients, batch):
        created = User.objects.bulk_create([
            User(username=f"b{n:07d}", email=f"b{n:07d}@students.example.edu", first_name="Student",
                 last_name=str(n), phone=f"+4479111{n:05d}"[:13] if n < 100_000 else f"+447911{n:06d}",
                 phone_verified_at=verified)
            for n in range(start, min(start + batch, recipients))
        ])
        Cohort.members.through.objects.bulk_create(
            [Cohort.members.through(cohort=cohort, user=user) for user in created])
        if "push" in channels:
            PushSubscription.objects.bulk_create([
                PushSubscription(user=user, endpoint=f"http://127.0.0.1:{ports['push']}/push/{user.pk}",
                                 p256dh=p256dh, auth=auth) for user in created])
    if "sms" in channels:
        CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)
    if connection.vendor == "postgresql":  # planner statistics, as autovacuum keeps them in production
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    users = list(User.objects.filter(username__startswith="b").values_list("pk", flat=True)[:5000])
    return dict(sender=sender, notifier="academic", category="announcement", title="Campus closed",
                body="The campus is closed today because of snow. Lectures move online.",
                audience={"cohorts": ["bench"]}, channels=channels), users


def scale_audience(size):
    """A cohort of the first `size` recipients (by id); returns its code."""
    from accounts.models import Cohort, User

    cohort = Cohort.objects.create(code="bench-small", name="Benchmark cohort, first recipients")
    ids = list(User.objects.filter(username__startswith="b0").order_by("pk").values_list("pk", flat=True)[:size])
    Cohort.members.through.objects.bulk_create([Cohort.members.through(cohort=cohort, user_id=pk) for pk in ids])
    return cohort.code


def opt_out_half(channels):
    """Every other recipient turns the benchmark's category off on every channel sent; returns their ids."""
    from accounts.models import User
    from notifications.models import Preference

    ids = list(User.objects.filter(username__startswith="b").order_by("pk").values_list("pk", flat=True))[::2]
    for start in range(0, len(ids), 5000):
        Preference.objects.bulk_create([Preference(user_id=pk, category="announcement", channel=channel, enabled=False)
                                        for pk in ids[start:start + 5000] for channel in channels])
    return ids


def compare_planning(notification_args, opted_out, chunk, repeats=3):
    """Time planning + writing every page of the audience here, as a page task does, with the opt-outs
    on and then turned back on as choices (same preference rows, so only the outcome differs), alternately.

    Returns {"opted_out": [seconds], "none": [seconds]}; the end-to-end runs depend on the workers'
    scheduling and the machine's load, this measures the representation's own cost.
    """
    from channels_app.registry import get_notifier
    from django.db import transaction
    from notifications.engine.audience import audience_users
    from notifications.engine.planning import RECIPIENT_FIELDS, DeliveryPlanner
    from notifications.models import Delivery, Notification, Preference

    def plan_all():
        notification = Notification.objects.create(**notification_args, status="cancelled")  # workers ignore it
        planner = DeliveryPlanner(notification, get_notifier(notification.notifier))
        audience, cursor = audience_users(notification.audience).order_by("pk"), 0
        started = time.perf_counter()
        while users := list(audience.filter(pk__gt=cursor).only(*RECIPIENT_FIELDS)[:chunk]):
            cursor = users[-1].pk
            with transaction.atomic():
                Delivery.objects.bulk_create(planner.plan(users), ignore_conflicts=True)
        seconds = time.perf_counter() - started
        notification.delete()
        return seconds

    times = {"opted_out": [], "none": []}
    preferences = Preference.objects.filter(user_id__in=opted_out)
    for _ in range(repeats):
        preferences.update(enabled=False)
        times["opted_out"].append(plan_all())
        preferences.update(enabled=True)
        times["none"].append(plan_all())
    preferences.update(enabled=False)
    return times


def measure_limits(channels, ports, control, users, notification_args):
    from notifications.models import Notification

    limits = {}
    # With a peer latency (BENCH_PEER_LATENCY_MS) one client is latency-bound: a few seconds' worth will do.
    latency = float(os.environ.get("BENCH_PEER_LATENCY_MS") or 0) / 1000
    count = max(20, int(3 / latency)) if latency else None
    if "email" in channels:
        limits["email"] = raw_smtp_rate(ports["smtp"], notification_args, count=count or 2000)
    if "sms" in channels:
        limits["sms"] = raw_http_rate(f"http://127.0.0.1:{ports['twilio']}/2010-04-01/Accounts/AC/Messages.json",
                                      count=count or 1000, form=lambda n: {"To": f"+raw{n}", "Body": "x" * 140})
    if "push" in channels:
        limits["push"] = raw_http_rate(f"http://127.0.0.1:{ports['push']}/raw/{{n}}", count=count or 1000,
                                       body=b"x" * 300)
    if {"email", "sms", "push"} <= set(channels):
        limits["together"], _ = raw_together_rate(ports, notification_args, count or 2000)
    if "inbox" in channels:
        scratch = Notification.objects.create(notifier="academic", category="announcement", title="raw",
                                              body="raw", status="cancelled")
        limits["inbox"] = raw_inbox_rate(scratch, users)
        scratch.delete()
    control.send("reset")
    control.recv()
    return limits


def wait_for_workers(timeout=60):
    """Return once the cluster runs tasks (a task that writes a cache key has run)."""
    from django.core.cache import cache
    from django_q.tasks import async_task

    key = f"bench-ready-{os.getpid()}"
    async_task("django.core.cache.cache.set", key, 1, 600)
    deadline = time.monotonic() + timeout
    while not cache.get(key):
        if time.monotonic() > deadline:
            raise SystemExit("the qcluster workers did not start")
        time.sleep(0.1)


def run(notification_args, channels, args, control, cluster, opted_out=0):
    from django.db.models import Count, Sum

    from notifications.models import InboxMessage
    from notifications.models import Delivery, Notification
    from notifications.services import notification_send

    rss, stop = [0.0], threading.Event()

    def watch_rss():
        while not stop.is_set():
            rss[0] = max(rss[0], peak_rss_mb(cluster.pid))
            stop.wait(0.5)

    watcher = threading.Thread(target=watch_rss, daemon=True)
    watcher.start()
    started = time.time()
    notification, _ = notification_send(**notification_args)
    deadline = time.monotonic() + args.timeout
    while not Notification.objects.filter(pk=notification.pk, status__in=Notification.FINAL_STATUSES).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {dict(Delivery.objects.values_list('status').annotate(Count('id')))}")
        time.sleep(0.05)
    notification.refresh_from_db()
    seconds = notification.completed_at.timestamp() - started
    planned = notification.fanned_out_at.timestamp() - started
    print(f"fan-out planned in {planned:.2f} s" + (f" ({opted_out} opted out)" if opted_out else ""),
          file=sys.stderr)
    stop.set()
    watcher.join()
    rss[0] = max(rss[0], peak_rss_mb(cluster.pid))

    deliveries = Delivery.objects.filter(notification=notification)
    statuses = dict(deliveries.values_list("status").annotate(Count("id")))
    received = dict(control.send("stats") or control.recv())
    lost = duplicates = 0
    for channel in channels:
        expected = args.recipients - opted_out
        if channel == "inbox":
            got = distinct = InboxMessage.objects.filter(notification=notification).count()
        else:
            got, distinct = received[channel]
        lost += expected - distinct
        duplicates += got - distinct
    if set(statuses) - {"sent", "skipped"}:
        print(f"delivery statuses: {statuses}", file=sys.stderr)
    from channels_app.models import PerformanceMetric

    steps = PerformanceMetric.objects.filter(operation="send").aggregate(ms=Sum("duration_ms"), batches=Count("id"))
    print(f"time in the channel steps: {(steps['ms'] or 0) / 1000:.2f} s over {steps['batches']} batches "
          f"(all workers together)", file=sys.stderr)
    recorded = deliveries.aggregate(reclaims=Sum("reclaims"))["reclaims"] or 0
    if recorded:
        print(f"reclaimed deliveries (possible duplicates, recorded): {recorded}", file=sys.stderr)
    skipped = statuses.get("skipped", 0)
    from django.db.models import Max

    # Each channel's own rate: its deliveries until its last was handed to the provider (or written).
    per_channel = {row["channel"]: row["n"] / max(row["last"].timestamp() - started, 1e-6)
                   for row in deliveries.filter(status="sent").values("channel").annotate(n=Count("id"),
                                                                                          last=Max("sent_at"))}
    return {"deliveries": deliveries.count() - skipped, "seconds": seconds, "lost": lost, "duplicates": duplicates,
            "rss": rss[0], "planned": planned, "skipped": skipped, "per_channel": per_channel}


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    main()
