"""A cluster killed with SIGKILL in the middle of a fan-out loses nothing once restarted and swept."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Delivery, Notification
from notifications.engine import deliveries_sweep
from notifications.services import notification_send

from .conftest import BROKERS
from .delivery_helpers import closed_breakers, students  # noqa: F401
from .peers import wait_until

RECIPIENTS = 300


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closed_breakers")
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_finishes_a_fan_out_after_the_cluster_is_killed_and_restarted(broker, smtp_peer, workers, admin_user,
                                                                          settings):
    settings.FANOUT_CHUNK_SIZE = 20
    settings.DELIVERY_LEASE_SECONDS = settings.DELIVERY_STALE_SECONDS = 60
    worker_env = dict(FANOUT_CHUNK_SIZE=20, Q_TIMEOUT=20, DELIVERY_LEASE_SECONDS=60, DELIVERY_STALE_SECONDS=60)
    smtp_peer.delay = 0.02  # ~0.4 s per chunk: there is always work in flight
    users = students("s7000", RECIPIENTS)
    cluster = workers(**worker_env)

    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Campus closed", body="Snow.", channels=["email"],
                                        audience={"users": [u.username for u in users]})
    deliveries = Delivery.objects.filter(notification=notification)
    wait_until(lambda: deliveries.filter(status="sent").count() >= 60, timeout=90, interval=0.05,
               message="a fan-out well under way")
    # The server stops answering: once a message is held, a worker is stuck inside a claimed chunk.
    smtp_peer.hold = True
    wait_until(lambda: smtp_peer.held > 0, timeout=30, interval=0.05, message="a send held mid-flight")
    cluster.kill()
    smtp_peer.hold = False
    in_flight = set(deliveries.filter(status="sending").values_list("id", flat=True))
    sent_before = deliveries.filter(status="sent").count()
    assert in_flight and sent_before < RECIPIENTS

    # The sweep, run past the lease, takes back what the dead cluster held and re-enqueues lost tasks.
    swept = deliveries_sweep(now=timezone.now() + timedelta(seconds=61))
    assert swept["reclaimed"] == len(in_flight)
    assert not deliveries.filter(status="sending").exists()
    workers(**worker_env)

    wait_until(lambda: deliveries.filter(status="sent").count() == RECIPIENTS, timeout=120,
               message=f"all {RECIPIENTS} deliveries sent after the restart")
    received = Counter(str(message["Message-ID"]) for message in smtp_peer.messages)
    by_message_id = {d.message_id: d for d in deliveries}
    assert set(received) == set(by_message_id)  # every delivery reached the mailbox: none lost
    duplicated = {by_message_id[mid].pk for mid, count in received.items() if count > 1}
    assert duplicated <= in_flight  # duplicates only among what the killed cluster had in flight ...
    assert set(deliveries.filter(reclaims__gt=0).values_list("id", flat=True)) == in_flight  # ... and recorded
    assert max(received.values()) <= 2
    assert {d.send_count for d in deliveries} == {1}
    wait_until(lambda: Notification.objects.get(pk=notification.pk).status == "sent",
               message="notification marked sent")
    print(f"in flight at the kill: {len(in_flight)}, sent before: {sent_before}, duplicates: {len(duplicated)}")
