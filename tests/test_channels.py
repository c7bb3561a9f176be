"""Each channel through its real client, against a real local peer on 127.0.0.1."""

import json
from io import StringIO

import http_ece
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from py_vapid import b64urldecode

from channels_app.models import PushSubscription
from notifications.models import CategoryDefault, Delivery, InboxMessage
from notifications.services import notification_send

from .conftest import make_user
from .delivery_helpers import BrowserKeys, closed_breakers, fan_out_and_send  # noqa: F401
from .delivery_helpers import students as many_students

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("closed_breakers")]


def send(admin_user, users, channels, **fields):
    fields.setdefault("title", "Room change for CS101")
    fields.setdefault("body", "Tomorrow's lecture moves to room B12.")
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        channels=channels, audience={"users": [u.username for u in users]}, **fields)
    fan_out_and_send(notification)
    return notification


def test_it_sends_a_batch_of_emails_over_one_smtp_connection(smtp_peer, admin_user, settings):
    students = many_students("s2000", 12)

    notification = send(admin_user, students, ["email"])

    deliveries = Delivery.objects.filter(notification=notification)
    assert set(deliveries.values_list("status", flat=True)) == {"sent"}
    assert len(smtp_peer.messages) == 12
    assert smtp_peer.connections == 1
    by_id = {d.message_id: d for d in deliveries.select_related("recipient")}
    for message in smtp_peer.messages:
        delivery = by_id[message["Message-ID"]]
        assert message["To"] == delivery.recipient.email
        assert delivery.provider_message_id == message["Message-ID"]
        assert message["Subject"] == "Room change for CS101"
        assert "Tomorrow's lecture moves to room B12." in message.get_body(("plain",)).get_content()
        assert "Tomorrow&#x27;s lecture moves to room B12." in message.get_body(("html",)).get_content()
        unsubscribe = str(message["List-Unsubscribe"]).strip()
        assert unsubscribe.startswith(f"<{settings.SITE_URL}/unsubscribe/") and unsubscribe.endswith("/>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_it_sends_email_through_an_anymail_esp_backend(http_peer, admin_user, settings):
    ids = iter(f"pm-{n}" for n in range(100))
    postmark = http_peer(lambda request: (200, {}, {"ErrorCode": 0, "Message": "OK", "MessageID": next(ids),
                                                    "To": json.loads(request["body"])["To"]}))
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "server-token", "POSTMARK_API_URL": postmark.url + "/"}
    students = [make_user(f"s21000{n}") for n in range(3)]

    notification = send(admin_user, students, ["email"])

    assert [r["path"] for r in postmark.requests] == ["/email"] * 3
    sent = [json.loads(r["body"]) for r in postmark.requests]
    assert sorted(p["To"] for p in sent) == sorted(s.email for s in students)
    assert {r["headers"]["X-Postmark-Server-Token"] for r in postmark.requests} == {"server-token"}
    for payload in sent:
        assert payload["Subject"] == "Room change for CS101"
        assert "room B12" in payload["TextBody"] and "room B12" in payload["HtmlBody"]
        headers = {h["Name"]: h["Value"] for h in payload["Headers"]}
        assert headers["List-Unsubscribe"].startswith(f"<{settings.SITE_URL}/unsubscribe/")
        assert headers["Message-ID"].startswith("<delivery-")
    deliveries = Delivery.objects.filter(notification=notification)
    assert sorted(p["Metadata"]["delivery_id"] for p in sent) == sorted(str(d.pk) for d in deliveries)
    # Recorded behind the ESP's name: a receipt moves only emails sent through the ESP that reports it.
    assert sorted(deliveries.values_list("provider_message_id", flat=True)) == [
        "Postmark:pm-0", "Postmark:pm-1", "Postmark:pm-2"]
    assert set(deliveries.values_list("status", flat=True)) == {"sent"}


@pytest.fixture
def twilio(http_peer, settings):
    def answer(request):
        n = len(twilio_peer.requests)
        return 201, {}, {"sid": f"SM{n:032d}", "status": "queued", "to": request["form"]["To"]}

    twilio_peer = http_peer(answer)
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "twilio-auth-token"
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "2" * 32
    settings.TWILIO_FROM_NUMBER = ""
    settings.TWILIO_API_BASE = twilio_peer.url
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)
    return twilio_peer


def phone_user(username, phone):
    return make_user(username, phone=phone, phone_verified_at=timezone.now())


def test_it_sends_sms_through_the_twilio_client_with_a_status_callback(twilio, admin_user, settings):
    settings.SMS_MAX_SEGMENTS = 2
    student = phone_user("s2200001", "+447911123456")

    notification = send(admin_user, [student], ["sms"], body="Lecture moved. " * 60)

    (request,) = twilio.requests
    assert request["method"] == "POST"
    assert request["path"] == f"/2010-04-01/Accounts/{settings.TWILIO_ACCOUNT_SID}/Messages.json"
    form = request["form"]
    assert form["To"] == "+447911123456"
    assert form["MessagingServiceSid"] == settings.TWILIO_MESSAGING_SERVICE_SID
    assert "From" not in form
    delivery = Delivery.objects.get(notification=notification)
    assert form["StatusCallback"] == f"{settings.SITE_URL}/webhooks/twilio/status/?delivery={delivery.pk}"
    # Cut to two GSM-7 segments of 153 characters, marked as cut.
    assert len(form["Body"]) == 306 and form["Body"].endswith("...")
    assert form["Body"].startswith("Room change for CS101: Lecture moved.")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_message_id) == ("sent", "SM" + "0" * 31 + "1")


def test_it_sends_sms_from_a_number_when_no_messaging_service_is_set(twilio, admin_user, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    student = phone_user("s2200002", "+33612345678")

    send(admin_user, [student], ["sms"], body="Short.")

    form = twilio.requests[0]["form"]
    assert (form["From"], form["To"], form["Body"]) == ("+15005550006", "+33612345678", "Room change for CS101: Short.")
    assert "MessagingServiceSid" not in form


@pytest.fixture
def vapid(settings):
    out = StringIO()
    call_command("generate_vapid_keys", stdout=out)
    keys = dict(line.split("=", 1) for line in out.getvalue().split())
    settings.VAPID_PUBLIC_KEY = keys["VAPID_PUBLIC_KEY"]
    settings.VAPID_PRIVATE_KEY = keys["VAPID_PRIVATE_KEY"]
    settings.VAPID_SUBJECT = "mailto:ops@example.edu"
    settings.PUSH_ALLOW_HTTP_ENDPOINTS = True  # the push services here are local http peers (a test-only escape)
    return keys


def subscribe(user, endpoint):
    keys = BrowserKeys()
    PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=keys.p256dh, auth=keys.auth)
    return keys


def test_it_sends_web_push_that_the_browser_can_decrypt(http_peer, vapid, admin_user, settings):
    push_service = http_peer(lambda request: (201, {}, b""))
    student = make_user("s2300001")
    browser = subscribe(student, push_service.url + "/push/v2/abc123")

    notification = send(admin_user, [student], ["push"])

    (request,) = push_service.requests
    assert request["path"] == "/push/v2/abc123"
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["ttl"] == "86400"
    # Signed with the VAPID key whose public half the browser subscribed with.
    assert f"k={vapid['VAPID_PUBLIC_KEY']}" in headers["authorization"]
    assert len(b64urldecode(vapid["VAPID_PUBLIC_KEY"].encode())) == 65
    payload = json.loads(http_ece.decrypt(request["body"], private_key=browser.private_key,
                                          auth_secret=browser.auth_secret, version="aes128gcm"))
    delivery = Delivery.objects.get(notification=notification)
    assert payload == {"title": "Room change for CS101", "body": "Tomorrow's lecture moves to room B12.",
                       "url": f"{settings.SITE_URL}/inbox/{notification.pk}/",
                       "notification_id": notification.pk, "delivery_id": delivery.pk}
    assert delivery.status == "sent"


@pytest.mark.parametrize("status", [404, 410])
def test_it_removes_a_push_subscription_the_push_service_says_has_expired(http_peer, vapid, admin_user, status):
    push_service = http_peer(lambda request: (status if "gone" in request["path"] else 201, {}, b""))
    student = make_user("s2300002")
    subscribe(student, push_service.url + "/push/gone")
    subscribe(student, push_service.url + "/push/alive")
    other = make_user("s2300003")
    subscribe(other, push_service.url + "/push/gone-too")

    notification = send(admin_user, [student, other], ["push"])

    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [push_service.url + "/push/alive"]
    reached = Delivery.objects.get(notification=notification, recipient=student)
    assert reached.status == "sent"
    lost = Delivery.objects.get(notification=notification, recipient=other)
    assert (lost.status, lost.attempts) == ("failed", 1)
    assert f"subscription expired ({status})" in lost.last_error


def test_it_writes_the_inbox_in_bulk_with_a_fixed_number_of_queries(admin_user, settings):
    few = many_students("s2400", 3)
    many = many_students("s2410", 40)

    with CaptureQueriesContext(connection) as for_few:
        send(admin_user, few, ["inbox"])
    with CaptureQueriesContext(connection) as for_many:
        notification = send(admin_user, many, ["inbox"])

    assert InboxMessage.objects.filter(notification=notification).count() == 40
    assert set(Delivery.objects.filter(notification=notification).values_list("status", flat=True)) == {"sent"}
    # No query per message: only one write (and one look for a cancel) per recording window.
    assert len(for_many) - len(for_few) <= 2 * (40 // settings.DELIVERY_RECORD_EVERY)


def test_it_generates_a_vapid_key_pair_for_pywebpush_and_browsers(vapid):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from py_vapid import Vapid02

    private = b64urldecode(vapid["VAPID_PRIVATE_KEY"].encode())
    public = b64urldecode(vapid["VAPID_PUBLIC_KEY"].encode())

    assert len(private) == 32 and len(public) == 65 and public[0] == 4  # raw scalar; uncompressed P-256 point
    derived = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1()).public_key()
    assert derived.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == public
    assert Vapid02.from_string(vapid["VAPID_PRIVATE_KEY"]).public_key.public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint) == public
    assert "=" not in vapid["VAPID_PUBLIC_KEY"] + vapid["VAPID_PRIVATE_KEY"]
