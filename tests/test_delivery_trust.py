"""Delivery you can trust, with real workers: recorded as it goes, a cancel that stops, retries on time."""

import time
from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from notifications.engine import deliveries_sweep, notification_fan_out
from notifications.models import Delivery
from notifications.services import notification_cancel, notification_send

from .conftest import BROKERS
from .delivery_helpers import closed_breakers, fan_out_and_send, students  # noqa: F401
from .peers import wait_until

pytestmark = [pytest.mark.usefixtures("closed_breakers")]
WINDOW = 10  # DELIVERY_RECORD_EVERY in the workers
Q_WORKERS = 2
# EMAIL_SESSIONS in the workers: each session may have one message sent and not yet recorded beyond the window.
SESSIONS = 4


def send(admin_user, users, **fields):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title=fields.pop("title", "Campus closed"), body="Snow.", channels=["email"],
                                        audience={"users": [u.username for u in users]}, **fields)
    return notification


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_loses_at_most_the_recording_window_when_a_worker_is_killed_mid_chunk(broker, smtp_peer, workers,
                                                                                  admin_user, settings):
    recipients = 400
    settings.FANOUT_CHUNK_SIZE = 200
    settings.DELIVERY_LEASE_SECONDS = settings.DELIVERY_STALE_SECONDS = 60
    worker_env = dict(FANOUT_CHUNK_SIZE=200, Q_TIMEOUT=60, DELIVERY_LEASE_SECONDS=60, DELIVERY_STALE_SECONDS=60,
                      DELIVERY_RECORD_EVERY=WINDOW, Q_WORKERS=Q_WORKERS, EMAIL_SESSIONS=SESSIONS)
    smtp_peer.delay = 0.02
    users = students("s9100", recipients)
    cluster = workers(**worker_env)

    notification = send(admin_user, users)
    deliveries = Delivery.objects.filter(notification=notification)
    # Recorded while the chunk is sent: "sent" rows appear long before a 200-message chunk ends.
    wait_until(lambda: deliveries.filter(status="sent").count() >= 40, timeout=90, interval=0.05,
               message="outcomes recorded mid-chunk")
    assert deliveries.filter(status="sending").exists()
    smtp_peer.hold = True
    wait_until(lambda: smtp_peer.held > 0, timeout=30, interval=0.05, message="a send held mid-flight")
    time.sleep(0.5)  # the other worker reaches its next message too
    cluster.kill()
    smtp_peer.hold = False
    in_flight = set(deliveries.filter(status="sending").values_list("id", flat=True))
    sent_before = deliveries.filter(status="sent").count()
    time.sleep(1)  # the held messages are accepted by the server after the sender died
    unrecorded = len(smtp_peer.messages) - sent_before  # reached the mailbox, not recorded when the cluster died

    swept = deliveries_sweep(now=timezone.now() + timedelta(seconds=61))
    assert swept["reclaimed"] == len(in_flight)
    workers(**worker_env)
    wait_until(lambda: not deliveries.filter(status__in=Delivery.PENDING_STATUSES).exists(), timeout=120,
               message="every delivery final after recovery")

    received = Counter(str(message["Message-ID"]) for message in smtp_peer.messages)
    by_message_id = {d.message_id: d for d in deliveries}
    assert set(received) == set(by_message_id)  # nothing lost
    assert deliveries.filter(status="sent").count() == recipients
    duplicated = {by_message_id[mid].pk for mid, count in received.items() if count > 1}
    assert duplicated <= in_flight
    # at most the recording window of each worker and a message in flight per session ...
    assert len(duplicated) <= Q_WORKERS * (WINDOW + SESSIONS)
    assert duplicated <= {d.pk for d in deliveries if d.possible_duplicate}  # ... and marked
    print(f"\nkill mid-chunk ({broker}): chunk 200, window {WINDOW}, {SESSIONS} sessions x {Q_WORKERS} workers; in flight "
          f"{len(in_flight)}, sent and unrecorded {unrecorded}, duplicates {len(duplicated)}")


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_stops_every_worker_soon_after_a_cancel_and_tells_the_truth(broker, smtp_peer, workers, admin_user,
                                                                       settings):
    recipients = 1000
    settings.FANOUT_CHUNK_SIZE = 250
    worker_env = dict(FANOUT_CHUNK_SIZE=250, Q_TIMEOUT=120, DELIVERY_RECORD_EVERY=25, DELIVERY_RECORD_SECONDS=1,
                      Q_WORKERS=Q_WORKERS, EMAIL_SESSIONS=SESSIONS)
    smtp_peer.delay = 0.03  # a slow provider: ~30 messages/s per worker
    users = students("s9200", recipients)
    workers(**worker_env)

    notification = send(admin_user, users)
    deliveries = Delivery.objects.filter(notification=notification)
    wait_until(lambda: len(smtp_peer.messages) >= 100, timeout=90, interval=0.05, message="a send under way")
    notification_cancel(notification)
    cancelled_at, at_cancel = time.monotonic(), len(smtp_peer.messages)

    wait_until(lambda: not deliveries.filter(status__in=Delivery.PENDING_STATUSES).exists(), timeout=30,
               interval=0.1, message="every worker stopped")
    time.sleep(1)  # nothing more arrives
    after_cancel = len(smtp_peer.messages) - at_cancel
    latency = max(smtp_peer.received_at) - cancelled_at
    notification.refresh_from_db()
    assert notification.status == "cancelled"
    statuses = Counter(deliveries.values_list("status", flat=True))
    assert set(statuses) == {"sent", "cancelled"}
    assert statuses["sent"] == len(smtp_peer.messages) == len({str(m["Message-ID"]) for m in smtp_peer.messages})
    assert statuses["sent"] < recipients
    # Each worker checks at every recording window: at most a window (and a message in flight per session) each.
    assert after_cancel <= Q_WORKERS * (25 + SESSIONS)
    report = StringIO()
    call_command("delivery_report", str(notification.pk), stdout=report)
    assert f"sent {statuses['sent']}" in report.getvalue()
    print(f"\ncancel ({broker}): {after_cancel} sent after the cancel, last one {latency:.2f}s after it; "
          f"{statuses['sent']} sent, {statuses['cancelled']} cancelled")


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_sends_a_retry_at_its_due_time_not_at_the_next_sweep(broker, smtp_peer, workers, admin_user, settings):
    worker_env = dict(DELIVERY_RETRY_BASE_SECONDS=4, Q_WORKERS=Q_WORKERS)
    users = students("s9300", 3)
    smtp_peer.fail_next = 3  # 451 for the first try of each
    workers(**worker_env)

    notification = send(admin_user, users)
    deliveries = Delivery.objects.filter(notification=notification)
    wait_until(lambda: deliveries.filter(status="retrying").count() == 3, timeout=30, interval=0.05,
               message="three retries recorded")
    # The sweep runs once a minute (first 30 s after the cluster starts): a send within seconds is the retry's own.
    wait_until(lambda: deliveries.filter(status="sent").count() == 3, timeout=15, interval=0.1,
               message="the retries sent at their due time")
    waits = [(d.sent_at - d.next_attempt_at).total_seconds() for d in deliveries]
    assert all(w >= 0 for w in waits)
    assert set(deliveries.values_list("attempts", flat=True)) == {2}
    print(f"\nretry ({broker}): a due retry waited {min(waits):.2f}-{max(waits):.2f}s past its due time")


@pytest.mark.django_db
def test_it_gives_up_on_a_delivery_whose_worker_dies_on_every_attempt(smtp_peer, admin_user, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 3
    settings.DELIVERY_LEASE_SECONDS = 60
    [user] = students("s9400", 1)
    notification = send(admin_user, [user], title="Poison")
    notification_fan_out(notification.pk)
    delivery = Delivery.objects.get(notification=notification)
    now = timezone.now()
    for attempt in range(1, 4):
        # A worker claims it (as deliveries_send does) and dies before recording anything.
        Delivery.objects.filter(pk=delivery.pk).update(status="sending", claim_token=f"dead-{attempt}",
                                                       claimed_at=now, attempts=F("attempts") + 1)
        now += timedelta(seconds=61)
        deliveries_sweep(now=now)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.reclaims) == ("failed", 3, 3)
    assert "gave up after 3 attempts" in delivery.last_error
    assert not smtp_peer.messages


@pytest.mark.django_db
def test_it_shows_a_possible_duplicate_in_the_api_and_the_report(smtp_peer, admin_user, client):
    users = students("s9500", 2)
    notification = send(admin_user, users)
    fan_out_and_send(notification)
    twice, once = Delivery.objects.filter(notification=notification).order_by("pk")
    Delivery.objects.filter(pk=twice.pk).update(reclaims=1)  # sent after a worker died holding it

    client.force_login(admin_user)
    rows = client.get(f"/api/v1/notifications/{notification.pk}/deliveries/").json()
    rows = rows.get("results", rows)
    assert {row["id"]: row["possible_duplicate"] for row in rows} == {twice.pk: True, once.pk: False}
    report = StringIO()
    call_command("delivery_report", str(notification.pk), stdout=report)
    assert "Possible duplicates: 1" in report.getvalue()
    csv_report = StringIO()
    call_command("delivery_report", str(notification.pk), "--csv", stdout=csv_report)
    lines = csv_report.getvalue().splitlines()
    assert lines[0].endswith(",possible_duplicate")
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["yes", ""]


@pytest.mark.django_db
def test_it_hands_back_what_it_has_not_tried_when_its_time_budget_is_spent(smtp_peer, admin_user, settings):
    settings.DELIVERY_RECORD_EVERY = 5
    settings.DELIVERY_TASK_SECONDS = 0.3
    smtp_peer.delay = 0.05  # ten messages take longer than the budget
    users = students("s9600", 50)
    notification = send(admin_user, users)

    fan_out_and_send(notification)

    deliveries = Delivery.objects.filter(notification=notification)
    statuses = Counter(deliveries.values_list("status", flat=True))
    assert set(statuses) == {"sent", "queued"}  # stopped at a recording window past the budget
    assert statuses["sent"] == len(smtp_peer.messages)
    assert set(deliveries.filter(status="queued").values_list("attempts", flat=True)) == {0}  # not an attempt

    settings.DELIVERY_TASK_SECONDS = 60  # the next task takes the rest
    fan_out_and_send(notification)
    assert Counter(deliveries.values_list("status", flat=True)) == {"sent": 50}
    assert Counter(str(m["To"]) for m in smtp_peer.messages) == Counter(u.email for u in users)
