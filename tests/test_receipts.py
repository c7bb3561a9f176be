"""Provider receipts update deliveries: Twilio status callbacks (signed) and anymail tracking webhooks."""

import base64
import json

import pytest
from twilio.request_validator import RequestValidator

from notifications.models import Delivery, Notification
from notifications.services import notification_send

from .delivery_helpers import students

pytestmark = pytest.mark.django_db

TWILIO_URL = "/webhooks/twilio/status/"


@pytest.fixture
def sent_delivery(admin_user):
    def make(channel, provider_message_id):
        (student,) = students(f"s4{channel[:2]}", 1)
        notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                            title="Grades", body="Released.", channels=[channel],
                                            audience={"users": [student.username]})
        Notification.objects.filter(pk=notification.pk).update(status="sending")
        return Delivery.objects.create(notification=notification, recipient=student, channel=channel,
                                       status="sent", attempts=1, send_count=1,
                                       provider_message_id=provider_message_id)

    return make


@pytest.fixture
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = "twilio-auth-token"
    settings.SITE_URL = "https://notify.example.edu"
    return settings


def twilio_post(client, params, signature):
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature is not None else {}
    return client.post(TWILIO_URL, params, **headers)


def test_it_marks_an_sms_delivered_on_a_signed_twilio_callback(client, sent_delivery, twilio_settings):
    delivery = sent_delivery("sms", "SM" + "a" * 32)
    params = {"MessageSid": delivery.provider_message_id, "MessageStatus": "delivered", "To": "+447911123456"}
    signature = RequestValidator("twilio-auth-token").compute_signature(
        "https://notify.example.edu" + TWILIO_URL, params)

    response = twilio_post(client, params, signature)

    assert response.status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.delivered_at is not None


def test_it_marks_an_sms_failed_with_twilios_error_code(client, sent_delivery, twilio_settings):
    delivery = sent_delivery("sms", "SM" + "b" * 32)
    params = {"MessageSid": delivery.provider_message_id, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    signature = RequestValidator("twilio-auth-token").compute_signature(
        "https://notify.example.edu" + TWILIO_URL, params)

    assert twilio_post(client, params, signature).status_code == 204

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.last_error == "undelivered: Twilio error 30003"


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "wrong-token"])
def test_it_refuses_an_unsigned_or_badly_signed_twilio_callback(client, sent_delivery, twilio_settings, signature):
    delivery = sent_delivery("sms", "SM" + "c" * 32)
    params = {"MessageSid": delivery.provider_message_id, "MessageStatus": "delivered"}
    if signature == "wrong-token":  # signed, but with someone else's token
        signature = RequestValidator("another-token").compute_signature(
            "https://notify.example.edu" + TWILIO_URL, params)

    response = twilio_post(client, params, signature)

    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_it_refuses_a_twilio_callback_whose_body_was_changed(client, sent_delivery, twilio_settings):
    delivery = sent_delivery("sms", "SM" + "d" * 32)
    signed = {"MessageSid": delivery.provider_message_id, "MessageStatus": "failed"}
    signature = RequestValidator("twilio-auth-token").compute_signature(
        "https://notify.example.edu" + TWILIO_URL, signed)

    response = twilio_post(client, {**signed, "MessageStatus": "delivered"}, signature)

    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


@pytest.fixture
def anymail_webhook(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook-user:hook-password", "POSTMARK_SERVER_TOKEN": "server-token"}

    def post(client, event, credentials="hook-user:hook-password"):
        auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()} if credentials else {}
        return client.post("/webhooks/anymail/postmark/tracking/", json.dumps(event),
                           content_type="application/json", **auth)

    return post


def postmark_bounce(message_id):
    return {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
            "Name": "Hard bounce", "MessageID": message_id, "Description": "The server was unable to deliver",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
            "Email": "s4em00000@students.example.edu", "From": "notifications@flashnotify.localhost",
            "BouncedAt": "2026-11-25T10:00:00Z", "Inactive": True, "CanActivate": True, "Subject": "Grades"}


def test_it_marks_an_email_bounced_from_an_anymail_tracking_webhook(client, sent_delivery, anymail_webhook):
    delivery = sent_delivery("email", "883953f4-6105-42a2-a16a-77a8eac79483")

    response = anymail_webhook(client, postmark_bounce(delivery.provider_message_id))

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.failed_at is not None
    assert delivery.last_error.startswith("bounced: The server was unable to deliver")


def test_it_marks_an_email_delivered_from_an_anymail_tracking_webhook(client, sent_delivery, anymail_webhook):
    delivery = sent_delivery("email", "00000000-6105-42a2-a16a-77a8eac79483")
    event = {"RecordType": "Delivery", "MessageID": delivery.provider_message_id, "Recipient": "x@example.edu",
             "DeliveredAt": "2026-11-25T10:00:00Z", "Details": "Test delivery", "Tag": "", "ServerID": 23}

    assert anymail_webhook(client, event).status_code == 200

    assert Delivery.objects.get(pk=delivery.pk).status == "delivered"


def test_it_refuses_an_anymail_tracking_webhook_without_the_shared_secret(client, sent_delivery, anymail_webhook):
    delivery = sent_delivery("email", "11111111-6105-42a2-a16a-77a8eac79483")

    for credentials in (None, "hook-user:wrong"):
        response = anymail_webhook(client, postmark_bounce(delivery.provider_message_id), credentials=credentials)
        assert response.status_code in (400, 401, 403)

    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_twilio_receipt_that_arrives_before_the_send_is_recorded(http_peer, admin_user, settings):
    from django.test import Client
    from django.utils import timezone

    from notifications.models import CategoryDefault
    from notifications.engine import deliveries_send, notification_fan_out

    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "1" * 32, "twilio-auth-token"
    settings.TWILIO_MESSAGING_SERVICE_SID, settings.SITE_URL = "MG" + "2" * 32, "https://notify.example.edu"

    def twilio_answers_after_its_callback(request):
        # The handset reports delivery before Twilio's API call has even returned to the worker.
        callback = request["form"]["StatusCallback"]
        params = {"MessageSid": "SM" + "e" * 32, "MessageStatus": "delivered"}
        signature = RequestValidator("twilio-auth-token").compute_signature(callback, params)
        answered = Client().post(callback.removeprefix("https://notify.example.edu"), params,
                                 HTTP_X_TWILIO_SIGNATURE=signature)
        assert answered.status_code == 204
        return 201, {}, {"sid": "SM" + "e" * 32, "status": "queued"}

    settings.TWILIO_API_BASE = http_peer(twilio_answers_after_its_callback).url
    CategoryDefault.objects.create(category="announcement", channel="sms", enabled=True)
    (student,) = students("s4ra", 1, phone="+447911123456", phone_verified_at=timezone.now())
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Grades", body="Released.", channels=["sms"],
                                        audience={"users": [student.username]})
    notification_fan_out(notification.pk)

    deliveries_send(list(Delivery.objects.values_list("id", flat=True)))

    delivery = Delivery.objects.get(notification=notification)
    assert (delivery.status, delivery.send_count, delivery.provider_message_id) == ("delivered", 1, "SM" + "e" * 32)
    assert delivery.delivered_at is not None and delivery.sent_at is not None


def test_it_finds_the_delivery_of_an_anymail_event_by_its_metadata(client, sent_delivery, anymail_webhook):
    delivery = sent_delivery("email", "")  # the ESP's id is not recorded yet
    event = {**postmark_bounce("22222222-6105-42a2-a16a-77a8eac79483"), "Metadata": {"delivery_id": str(delivery.pk)}}

    assert anymail_webhook(client, event).status_code == 200

    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("bounced:")
