"""Acknowledgement and escalation: whoever has not acknowledged in time gets it again on the next channel."""

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from channels_app.models import PushSubscription
from notifications.models import Delivery, InboxMessage, Notification
from notifications.engine.escalation import escalations_run
from notifications.services.inbox import message_acknowledge
from notifications.selectors import acknowledgement_counts, notification_acknowledgements
from notifications.engine import deliveries_send, deliveries_sweep, notification_fan_out
from notifications.services import notification_send

from .conftest import make_user

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 15, 14, 0, tzinfo=UTC)


@pytest.fixture
def twilio(http_peer, settings):
    """An HTTP server standing in for Twilio's API."""
    peer = http_peer(lambda request: (201, {}, {"sid": f"SM{len(peer.requests):032d}", "status": "queued"}))
    settings.TWILIO_API_BASE = peer.url
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = "test-token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    return peer


@pytest.fixture
def people(db):
    def person(username, phone):
        user = make_user(username, phone=phone, phone_verified_at=T0, quiet_hours_start=dt.time(0),
                         quiet_hours_end=dt.time(23, 59))
        PushSubscription.objects.create(user=user, endpoint=f"https://push.example/{username}", p256dh="k", auth="a")
        return user

    return {"slow": person("slow", "+33612345678"), "quick": person("quick", "+33612345679"),
            "no_phone": person("nophone", "")}


def alert_at(people, now):
    """A security alert sent on push and inbox at `now`, its deliveries attempted at once."""
    notification, _ = notification_send(
        sender=None, notifier="security", title="Gas leak", body="Leave building C now.", channels=["push", "inbox"],
        data={"severity": "critical", "location": "Building C"},
        audience={"users": [u.username for u in people.values()]},
    )
    notification = notification_fan_out(notification.pk, now=now)
    # Push is not configured here: those deliveries fail, as an unreachable browser's would.
    deliveries_send(list(Delivery.objects.filter(notification=notification).values_list("pk", flat=True)), now=now)
    return notification


def levels(notification, user):
    return sorted(Delivery.objects.filter(notification=notification, recipient=user)
                  .values_list("escalation_level", "channel", "status"))


def test_it_requires_every_security_alert_to_be_acknowledged(people):
    notification = alert_at(people, T0)

    assert notification.requires_ack
    assert InboxMessage.objects.filter(notification=notification).count() == 3


def test_it_escalates_an_unacknowledged_alert_to_sms_and_not_an_acknowledged_one(people, twilio):
    notification = alert_at(people, T0)
    message_acknowledge(InboxMessage.objects.get(notification=notification, recipient=people["quick"]))

    assert escalations_run(now=T0 + dt.timedelta(minutes=9)) == {}  # SecurityNotifier waits 10 minutes
    assert escalations_run(now=T0 + dt.timedelta(minutes=10)) == {"escalated": 2}

    sms = Delivery.objects.get(notification=notification, recipient=people["slow"], escalation_level=1)
    assert (sms.channel, sms.status, sms.next_attempt_at) == ("sms", "queued", T0 + dt.timedelta(minutes=10))
    assert levels(notification, people["quick"]) == [(0, "inbox", "sent"), (0, "push", "failed")]
    # The one without a phone skips the SMS rung (recorded) and gets the email rung at once.
    assert levels(notification, people["no_phone"]) == [
        (0, "inbox", "sent"), (0, "push", "failed"), (1, "sms", "skipped"), (2, "email", "queued")]
    assert Delivery.objects.get(notification=notification, recipient=people["no_phone"], channel="sms").skip_reason \
        == "escalation: no verified phone number"

    deliveries_send([sms.pk], now=T0 + dt.timedelta(minutes=10))

    [request] = twilio.requests
    assert request["path"].endswith("/Messages.json")
    assert request["form"]["To"] == "+33612345678"
    assert request["form"]["Body"].startswith("ALERT (critical): Gas leak. Leave building C now. Location: Building C.")
    assert "/ack/" in request["form"]["Body"]
    sms.refresh_from_db()
    assert sms.status == "sent" and sms.provider_message_id.startswith("SM")


def test_it_climbs_the_ladder_one_rung_per_delay_and_stops_at_the_top(people, twilio, settings):
    notification = alert_at(people, T0)
    for user in (people["quick"], people["no_phone"]):
        message_acknowledge(InboxMessage.objects.get(notification=notification, recipient=user))

    escalations_run(now=T0 + dt.timedelta(minutes=10))
    assert escalations_run(now=T0 + dt.timedelta(minutes=15)) == {}  # the SMS is still pending
    sms = Delivery.objects.get(notification=notification, escalation_level=1)
    deliveries_send([sms.pk], now=T0 + dt.timedelta(minutes=11))
    assert escalations_run(now=T0 + dt.timedelta(minutes=20)) == {}  # 9 minutes after the SMS
    assert escalations_run(now=T0 + dt.timedelta(minutes=21)) == {"escalated": 1}
    assert escalations_run(now=T0 + dt.timedelta(hours=2)) == {}  # push → SMS → email: no rung left

    assert levels(notification, people["slow"]) == [
        (0, "inbox", "sent"), (0, "push", "failed"), (1, "sms", "sent"), (2, "email", "queued")]


def test_it_stops_escalating_once_the_recipient_acknowledges(people, twilio):
    notification = alert_at(people, T0)
    escalations_run(now=T0 + dt.timedelta(minutes=10))
    deliveries_send(list(Delivery.objects.filter(escalation_level=1, channel="sms").values_list("pk", flat=True)),
                    now=T0 + dt.timedelta(minutes=10))
    for user in people.values():
        message_acknowledge(InboxMessage.objects.get(notification=notification, recipient=user))

    assert escalations_run(now=T0 + dt.timedelta(hours=1)) == {}


def test_it_escalates_from_the_periodic_sweep_and_enqueues_the_new_deliveries(people, broker):
    notification = alert_at(people, T0)

    done = deliveries_sweep(now=T0 + dt.timedelta(minutes=10))

    assert done["escalated"] == 3
    queued = Delivery.objects.filter(notification=notification, escalation_level__gt=0, status="queued")
    assert queued.count() == 3
    assert not queued.filter(enqueued_at__isnull=True).exists()
    assert Notification.objects.get(pk=notification.pk).status == Notification.Status.SENDING


def test_it_does_not_escalate_a_cancelled_alert(people):
    notification = alert_at(people, T0)
    Notification.objects.filter(pk=notification.pk).update(status=Notification.Status.CANCELLED)

    assert escalations_run(now=T0 + dt.timedelta(minutes=30)) == {}


def test_it_keeps_each_escalation_level_once_per_channel(people):
    notification = alert_at(people, T0)
    Delivery.objects.create(notification=notification, recipient=people["slow"], channel="push", escalation_level=1)

    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(notification=notification, recipient=people["slow"], channel="push",
                                escalation_level=1)


def test_it_shows_who_has_acknowledged(people, django_assert_num_queries):
    notification = alert_at(people, T0)
    message_acknowledge(InboxMessage.objects.get(notification=notification, recipient=people["quick"]))
    escalations_run(now=T0 + dt.timedelta(minutes=10))

    with django_assert_num_queries(1):
        rows = [(u.username, u.acknowledged_at is not None, u.escalation_level)
                for u in notification_acknowledgements(notification)]

    assert rows == [("quick", True, 0), ("nophone", False, 2), ("slow", False, 1)]
    assert acknowledgement_counts(notification) == {"recipients": 3, "acknowledged": 1, "waiting": 2}
