"""One message never harms another: whatever one raises fails it alone, with its reason; the rest go out once."""

import base64
from collections import Counter

import pytest
from django.utils import timezone

from accounts.models import User
from channels_app.models import PushSubscription
from notifications.models import CategoryDefault, Delivery, InboxMessage
from notifications.services import notification_send
from notifications.services.batches import BatchRow, batch_send

from .delivery_helpers import BrowserKeys, b64url, closed_breakers, fan_out_and_send  # noqa: F401
from .delivery_helpers import students as many_students
from .test_channels import vapid  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("closed_breakers")]
GOOD = 50


def send(admin_user, users, channels, **fields):
    fields.setdefault("title", "Room change for CS101")
    fields.setdefault("body", "Tomorrow's lecture moves to room B12.")
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        channels=channels, audience={"users": [u.username for u in users]}, **fields)
    summary = fan_out_and_send(notification)
    return notification, summary


def assert_one_failed(notification, poisoned, reason):
    deliveries = Delivery.objects.filter(notification=notification)
    assert not deliveries.filter(status="sending").exists()
    assert deliveries.filter(status="sent").count() == GOOD
    failed = deliveries.get(recipient=poisoned)
    assert failed.status == "failed" and failed.attempts == 1
    assert reason in failed.last_error
    notification.refresh_from_db()
    assert notification.status == "partially_failed"


def test_it_fails_only_the_email_whose_subject_breaks_a_header(smtp_peer, admin_user):
    users = many_students("s8100", GOOD + 1)
    poisoned = users[GOOD // 2]
    rows = [BatchRow(line=n, username=u.username, user_id=u.pk,
                     context={"room": "B12\nBcc: everyone@example.edu" if u == poisoned else "B12"})
            for n, u in enumerate(users)]
    [(notification, _)] = batch_send(rows=rows, key="poison-header", sender=admin_user, notifier="academic",
                                     category="announcement", title="Moved to {{ room }}", body="See you there.",
                                     channels=["email"])
    fan_out_and_send(notification)

    received = Counter(str(message["To"]) for message in smtp_peer.messages)
    assert len(received) == GOOD and set(received.values()) == {1}  # each good one exactly once
    assert poisoned.email not in received
    assert_one_failed(notification, poisoned, "BadHeaderError")
    assert "Bcc" not in "".join(str(m) for m in smtp_peer.messages)


NOT_ON_THE_CURVE = b64url(b"\x04" + b"\x01" * 64)  # 65 bytes, uncompressed form, but no P-256 point


@pytest.mark.parametrize(("poison", "reason"), [
    ("bad-key", "Invalid EC key"),
    ("ipv6-endpoint", "VapidException"),
])
def test_it_fails_only_the_push_whose_subscription_is_unusable(http_peer, vapid, admin_user, poison, reason):
    push_service = http_peer(lambda request: (201, {}, b""))
    users = many_students("s8200", GOOD + 1)
    poisoned = users[GOOD // 2]
    for user in users:
        keys = BrowserKeys()
        endpoint, p256dh = f"{push_service.url}/push/{user.username}", keys.p256dh
        if user == poisoned and poison == "bad-key":
            p256dh = NOT_ON_THE_CURVE
        if user == poisoned and poison == "ipv6-endpoint":
            endpoint = "https://[::1]:8853/x"
        PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=p256dh, auth=keys.auth)
    assert len(base64.urlsafe_b64decode(NOT_ON_THE_CURVE + "=")) == 65

    notification, _ = send(admin_user, users, ["push"])

    received = Counter(request["path"] for request in push_service.requests)
    assert len(received) == GOOD and set(received.values()) == {1}
    assert f"/push/{poisoned.username}" not in received
    assert_one_failed(notification, poisoned, reason)


def test_it_fails_only_the_sms_whose_answer_the_twilio_client_cannot_read(http_peer, admin_user, settings):
    users = list(User.objects.filter(pk__in=[u.pk for u in many_students("s8300", GOOD + 1)]).order_by("pk"))
    for n, user in enumerate(users):
        user.phone, user.phone_verified_at = f"+4479111{n:05d}", timezone.now()
    User.objects.bulk_update(users, ["phone", "phone_verified_at"])
    poisoned = users[GOOD // 2]

    def answer(request):
        if request["form"]["To"] == poisoned.phone:
            return 201, {"Content-Type": "application/json"}, b"<html>not json</html>"
        return 201, {}, {"sid": f"SM{len(twilio.requests):032d}", "status": "queued", "to": request["form"]["To"]}

    twilio = http_peer(answer)
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "twilio-auth-token"
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "2" * 32
    settings.TWILIO_API_BASE = twilio.url
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)

    notification, _ = send(admin_user, users, ["sms"])

    received = Counter(request["form"]["To"] for request in twilio.requests)
    assert len(received) == GOOD + 1 and set(received.values()) == {1}  # the poisoned one was tried once
    assert_one_failed(notification, poisoned, "JSONDecodeError")


def broken_store(messages):
    raise RuntimeError("inbox store unavailable")


def test_it_fails_the_messages_of_a_step_that_breaks_as_a_whole_and_sends_the_rest(smtp_peer, admin_user, settings):
    settings.INBOX_STORE = "tests.test_message_isolation.broken_store"
    users = many_students("s8400", GOOD)

    notification, summary = send(admin_user, users, ["email", "inbox"])

    deliveries = Delivery.objects.filter(notification=notification)
    assert not deliveries.filter(status="sending").exists()
    assert len(smtp_peer.messages) == GOOD
    assert deliveries.filter(channel="email", status="sent").count() == GOOD
    inbox = deliveries.filter(channel="inbox")
    assert inbox.count() == GOOD and set(inbox.values_list("status", flat=True)) == {"failed"}
    assert {d.last_error for d in inbox} == {"RuntimeError: inbox store unavailable"}
    assert not InboxMessage.objects.filter(notification=notification).exists()
    assert summary == {"sent": GOOD, "failed": GOOD}
