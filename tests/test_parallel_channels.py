"""A chunk's channels go out at the same time (DELIVERY_PARALLEL_CHANNELS), each recorded on its own, and
whatever one channel's part raises leaves the others' outcomes and nothing `sending`.

Transactional tests: the channels' threads have connections of their own, which see only committed rows
(inside a transaction the engine sends the channels one after the other, as the other engine tests do).
"""

import threading
import time

import pytest
from django.utils import timezone

from accounts.models import User
from notifications.engine import delivery as engine_delivery
from notifications.models import CategoryDefault, Delivery
from notifications.services import notification_send

from .delivery_helpers import closed_breakers, fan_out_and_send  # noqa: F401
from .delivery_helpers import students as many_students

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("closed_breakers")]
COUNT = 12


@pytest.fixture
def twilio(http_peer, settings):
    """A Twilio-like API on 127.0.0.1; `twilio.on_request(request)` runs before each answer."""
    def answer(request):
        peer.on_request(request)
        return 201, {}, {"sid": f"SM{len(peer.requests):032d}", "status": "queued", "to": request["form"]["To"]}

    peer = http_peer(answer)
    peer.on_request = lambda request: None
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "twilio-auth-token"
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "2" * 32
    settings.TWILIO_API_BASE = peer.url
    return peer


def send(admin_user, channels):
    users = list(User.objects.filter(pk__in=[u.pk for u in many_students("p7000", COUNT)]).order_by("pk"))
    for n, user in enumerate(users):
        user.phone, user.phone_verified_at = f"+4479222{n:05d}", timezone.now()
    User.objects.bulk_update(users, ["phone", "phone_verified_at"])
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Room change", body="Tomorrow's lecture moves to B12.",
                                        channels=channels, audience={"users": [u.username for u in users]})
    return notification, fan_out_and_send(notification)


def test_a_chunks_text_messages_go_out_while_its_emails_wait_for_their_server(smtp_peer, twilio, admin_user):
    # The mail server answers no email until the first text message has arrived, and that text waits for an
    # email to reach the server: sent one channel after the other, one of the two would wait for the other in
    # vain (the safety release ends an email's wait after 20 s).
    smtp_peer.hold = True
    seen = {}

    def first_text(request):
        if not seen:
            # The first text waits (8 s at most) for an email to reach the held server: sent together, one does.
            deadline = time.monotonic() + 8
            while not smtp_peer.held and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["emails_waiting"] = smtp_peer.held if smtp_peer.hold else 0
            smtp_peer.hold = False

    twilio.on_request = first_text
    safety = threading.Timer(20, lambda: setattr(smtp_peer, "hold", False))
    safety.start()
    try:
        notification, summary = send(admin_user, ["email", "sms"])
    finally:
        safety.cancel()

    assert seen["emails_waiting"] >= 1  # an email was in flight, held by its server, when the first text went
    deliveries = Delivery.objects.filter(notification=notification)
    assert set(deliveries.values_list("channel", "status").distinct()) == {("email", "sent"), ("sms", "sent")}
    assert len(smtp_peer.messages) == COUNT and len(twilio.requests) == COUNT
    assert summary == {"sent": 2 * COUNT}  # both channels' outcomes, counted once


def broken_store(messages):
    raise RuntimeError("inbox store unavailable")


def test_a_channel_whose_step_breaks_fails_alone_while_the_others_go(smtp_peer, twilio, admin_user, settings):
    settings.INBOX_STORE = "tests.test_parallel_channels.broken_store"

    notification, summary = send(admin_user, ["email", "sms", "inbox"])

    deliveries = Delivery.objects.filter(notification=notification)
    assert not deliveries.filter(status="sending").exists()
    assert deliveries.filter(channel__in=["email", "sms"], status="sent").count() == 2 * COUNT
    inbox = deliveries.filter(channel="inbox")
    assert {d.last_error for d in inbox} == {"RuntimeError: inbox store unavailable"} and inbox.count() == COUNT
    assert summary == {"sent": 2 * COUNT, "failed": COUNT}


def test_what_a_channels_part_raises_fails_its_task_and_leaves_nothing_sending(smtp_peer, twilio, admin_user,
                                                                              monkeypatch):
    real = engine_delivery._part_send

    def sms_breaks(part, summary, **kwargs):
        if part[0].channel == "sms":
            raise ConnectionError("the database went away")
        return real(part, summary, **kwargs)

    monkeypatch.setattr(engine_delivery, "_part_send", sms_breaks)

    with pytest.raises(ConnectionError):
        send(admin_user, ["email", "sms"])

    deliveries = Delivery.objects.filter(recipient__username__startswith="p7000")
    assert deliveries.filter(channel="email", status="sent").count() == COUNT == len(smtp_peer.messages)
    sms = deliveries.filter(channel="sms")
    assert set(sms.values_list("status", flat=True)) == {"failed"} and not twilio.requests
    assert "without an outcome" in sms.first().last_error


def test_one_after_the_other_when_turned_off(smtp_peer, twilio, admin_user, settings, monkeypatch):
    settings.DELIVERY_PARALLEL_CHANNELS = False
    threads = []
    real = engine_delivery._part_send
    monkeypatch.setattr(engine_delivery, "_part_send", lambda part, summary, **kwargs: (
        threads.append(threading.current_thread().name), real(part, summary, **kwargs))[1])

    notification, summary = send(admin_user, ["email", "sms"])

    assert threads == [threading.current_thread().name]  # one part, both channels, in the task's own thread
    assert summary == {"sent": 2 * COUNT}
