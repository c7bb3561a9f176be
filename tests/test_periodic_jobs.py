"""The sweep's periodic jobs run on real workers: a due digest is emailed, an overdue alert goes out by SMS."""

import datetime as dt

import pytest
from django.utils import timezone

from notifications.models import Delivery, InboxMessage
from notifications.services.preferences import preferences_save
from notifications.engine import deliveries_send, deliveries_sweep, notification_fan_out
from notifications.services import notification_send

from .conftest import BROKERS, make_user
from .peers import wait_until


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_emails_a_due_digest_from_a_worker(broker, smtp_peer, workers):
    reader = make_user("s1", first_name="Dana", digest_hour=6)
    preferences_save(reader, digests={"announcement": True})
    two_days_ago = timezone.now() - dt.timedelta(days=2)
    for title in ("Club fair", "Library hours"):
        notification, _ = notification_send(sender=None, notifier="academic", category="announcement",
                                            priority="low", title=title, body="…", channels=["email"],
                                            audience={"users": [reader.username]})
        notification_fan_out(notification.pk, now=two_days_ago)

    assert deliveries_sweep()["digests_enqueued"] == 1  # before the workers start: their own sweep would race
    workers()

    wait_until(lambda: len(smtp_peer.messages) == 1, timeout=60, message="one digest email")
    assert smtp_peer.messages[0]["Subject"] == "Your daily digest: Course announcement (2)"
    wait_until(lambda: set(Delivery.objects.filter(recipient=reader).values_list("status", flat=True)) == {"sent"},
               message="both gathered deliveries sent")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_escalates_an_unacknowledged_alert_to_sms_from_a_worker(broker, http_peer, workers, settings):
    twilio = http_peer(lambda request: (201, {}, {"sid": "SM" + "1" * 32, "status": "queued"}))
    slow = make_user("slow", phone="+33612345678", phone_verified_at=timezone.now())
    quick = make_user("quick", phone="+33612345679", phone_verified_at=timezone.now())
    started = timezone.now() - dt.timedelta(minutes=11)
    notification, _ = notification_send(sender=None, notifier="security", title="Gas leak", body="Leave now.",
                                        channels=["inbox"], data={"severity": "critical"},
                                        audience={"users": ["slow", "quick"]})
    notification_fan_out(notification.pk, now=started)
    deliveries_send(list(Delivery.objects.filter(notification=notification).values_list("pk", flat=True)), now=started)
    InboxMessage.objects.filter(notification=notification, recipient=quick).update(acknowledged_at=started)

    assert deliveries_sweep()["escalated"] == 1
    workers(TWILIO_API_BASE=twilio.url, TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="token",
            TWILIO_FROM_NUMBER="+15005550006")

    wait_until(lambda: len(twilio.requests) == 1, timeout=60, message="one SMS at Twilio")
    assert twilio.requests[0]["form"]["To"] == slow.phone
    wait_until(lambda: Delivery.objects.get(notification=notification, escalation_level=1).status == "sent",
               message="the escalated delivery recorded as sent")
    assert not Delivery.objects.filter(notification=notification, recipient=quick, escalation_level__gt=0).exists()
