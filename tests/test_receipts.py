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
    def make(channel, provider_message_id, status="sent", prefix="s4"):
        (student,) = students(f"{prefix}{channel[:2]}", 1)
        notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                            title="Grades", body="Released.", channels=[channel],
                                            audience={"users": [student.username]})
        Notification.objects.filter(pk=notification.pk).update(status="sending")
        return Delivery.objects.create(notification=notification, recipient=student, channel=channel,
                                       status=status, attempts=1, send_count=1,
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
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
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
    delivery = sent_delivery("email", "Postmark:883953f4-6105-42a2-a16a-77a8eac79483")

    response = anymail_webhook(client, postmark_bounce(delivery.provider_message_id.removeprefix("Postmark:")))

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.failed_at is not None
    assert delivery.last_error.startswith("bounced: The server was unable to deliver")


def test_it_marks_an_email_delivered_from_an_anymail_tracking_webhook(client, sent_delivery, anymail_webhook):
    delivery = sent_delivery("email", "Postmark:00000000-6105-42a2-a16a-77a8eac79483")
    event = {"RecordType": "Delivery", "MessageID": delivery.provider_message_id.removeprefix("Postmark:"), "Recipient": "x@example.edu",
             "DeliveredAt": "2026-11-25T10:00:00Z", "Details": "Test delivery", "Tag": "", "ServerID": 23}

    assert anymail_webhook(client, event).status_code == 200

    assert Delivery.objects.get(pk=delivery.pk).status == "delivered"


def test_it_refuses_an_anymail_tracking_webhook_without_the_shared_secret(client, sent_delivery, anymail_webhook):
    delivery = sent_delivery("email", "Postmark:11111111-6105-42a2-a16a-77a8eac79483")

    for credentials in (None, "hook-user:wrong"):
        response = anymail_webhook(client, postmark_bounce(delivery.provider_message_id.removeprefix("Postmark:")),
                                   credentials=credentials)
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
    delivery = sent_delivery("email", "Postmark:33333333-6105-42a2-a16a-77a8eac79483")
    # An event whose MessageID is not the one recorded still names its delivery in our metadata.
    event = {**postmark_bounce("22222222-6105-42a2-a16a-77a8eac79483"), "Metadata": {"delivery_id": str(delivery.pk)}}

    assert anymail_webhook(client, event).status_code == 200

    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.last_error.startswith("bounced:")


def test_it_has_no_esp_webhook_while_email_goes_over_smtp(client, sent_delivery):
    # The shipped default: an anonymous forged bounce naming a delivery by its (sequential) id.
    delivery = sent_delivery("email", "<delivery-1@flashnotify.localhost>")
    event = {**postmark_bounce("44444444-6105-42a2-a16a-77a8eac79483"), "Metadata": {"delivery_id": str(delivery.pk)}}

    response = client.post("/webhooks/anymail/postmark/tracking/", json.dumps(event), content_type="application/json")

    assert response.status_code == 404
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


ESPS = ["amazon_ses", "brevo", "mailersend", "mailgun", "mailjet", "mailtrap", "mandrill", "postal", "resend",
        "sendgrid", "sendinblue", "sparkpost", "unisender_go", "nonesuch"]


@pytest.mark.parametrize("esp", ESPS)
def test_it_answers_404_for_the_tracking_webhook_of_an_esp_we_do_not_send_through(client, anymail_webhook, esp):
    for prefix in ("/webhooks", "/api/v1/webhooks"):
        response = client.post(f"{prefix}/anymail/{esp}/tracking/", "{}", content_type="application/json")
        assert response.status_code == 404


@pytest.mark.parametrize("esp", ESPS[:-1] + ["postmark"])
@pytest.mark.parametrize("payload", ["{}", "[]", '{"RecordType": "Bounce"}', "not json"])
def test_it_never_answers_500_to_an_event_the_esp_parser_cannot_read(client, anymail_webhook, settings, esp, payload):
    settings.EMAIL_BACKEND = f"anymail.backends.{esp}.EmailBackend"

    response = client.post(f"/webhooks/anymail/{esp}/tracking/", payload, content_type="application/json",
                           HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"hook-user:hook-password").decode())

    # 4xx, or 503 for an ESP whose own webhook key (e.g. Mailgun's signing key) is not set here.
    assert response.status_code < 500 or response.status_code == 503


def test_it_refuses_every_esp_receipt_while_no_webhook_secret_is_set(client, sent_delivery, anymail_webhook, settings):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "server-token"}
    delivery = sent_delivery("email", "Postmark:55555555-6105-42a2-a16a-77a8eac79483")

    response = anymail_webhook(client, postmark_bounce("55555555-6105-42a2-a16a-77a8eac79483"), credentials=None)

    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


def test_it_moves_only_an_email_sent_through_the_esp_that_reports_it(client, sent_delivery, anymail_webhook):
    over_smtp = sent_delivery("email", "<delivery-9@flashnotify.localhost>")
    through_mailgun = sent_delivery("email", "Mailgun:66666666-6105-42a2-a16a-77a8eac79483", prefix="s5")

    for delivery in (over_smtp, through_mailgun):
        event = {**postmark_bounce("66666666-6105-42a2-a16a-77a8eac79483"),
                 "Metadata": {"delivery_id": str(delivery.pk)}}
        assert anymail_webhook(client, event).status_code == 200

    assert Delivery.objects.get(pk=over_smtp.pk).status == "sent"
    assert Delivery.objects.get(pk=through_mailgun.pk).status == "sent"


@pytest.mark.parametrize("status", ["queued", "retrying", "sending", "skipped", "cancelled"])
def test_it_never_lets_an_esp_receipt_move_a_delivery_that_was_not_sent(client, sent_delivery, anymail_webhook,
                                                                       status):
    delivery = sent_delivery("email", "Postmark:77777777-6105-42a2-a16a-77a8eac79483", status=status)
    bounce = {**postmark_bounce("77777777-6105-42a2-a16a-77a8eac79483"), "Metadata": {"delivery_id": str(delivery.pk)}}
    delivered = {"RecordType": "Delivery", "MessageID": "77777777-6105-42a2-a16a-77a8eac79483", "Recipient": "x@y.z",
                 "DeliveredAt": "2026-11-25T10:00:00Z", "Details": "", "Tag": "", "ServerID": 23,
                 "Metadata": {"delivery_id": str(delivery.pk)}}

    for event in (bounce, delivered):
        assert anymail_webhook(client, event).status_code == 200

    assert Delivery.objects.get(pk=delivery.pk).status == status


def test_it_bounces_a_delivered_email_but_never_delivers_a_failed_one(client, sent_delivery, anymail_webhook):
    delivered = sent_delivery("email", "Postmark:88888888-6105-42a2-a16a-77a8eac79483", status="delivered")
    failed = sent_delivery("email", "Postmark:99999999-6105-42a2-a16a-77a8eac79483", status="failed", prefix="s5")

    anymail_webhook(client, postmark_bounce("88888888-6105-42a2-a16a-77a8eac79483"))
    anymail_webhook(client, {"RecordType": "Delivery", "MessageID": "99999999-6105-42a2-a16a-77a8eac79483",
                             "Recipient": "x@y.z", "DeliveredAt": "2026-11-25T10:00:00Z", "Details": "", "Tag": "",
                             "ServerID": 23})

    assert Delivery.objects.get(pk=delivered.pk).status == "failed"
    assert Delivery.objects.get(pk=failed.pk).status == "failed"


@pytest.mark.parametrize("status", ["queued", "retrying", "failed"])
def test_it_applies_the_same_state_rule_to_signed_twilio_callbacks(client, sent_delivery, twilio_settings, status):
    delivery = sent_delivery("sms", "SM" + "f" * 32, status=status)
    url = f"{TWILIO_URL}?delivery={delivery.pk}"
    for event in ("undelivered", "delivered"):
        params = {"MessageSid": delivery.provider_message_id, "MessageStatus": event, "ErrorCode": "30003"}
        signature = RequestValidator("twilio-auth-token").compute_signature("https://notify.example.edu" + url, params)
        assert client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 204

    assert Delivery.objects.get(pk=delivery.pk).status == status


def test_it_fails_an_email_sent_through_the_esp_on_its_bounce(http_peer, admin_user, anymail_webhook, settings,
                                                             client):
    from notifications.engine import deliveries_send, notification_fan_out

    postmark = http_peer(lambda request: (200, {}, {"ErrorCode": 0, "Message": "OK", "MessageID": "pm-bounce-1",
                                                    "To": json.loads(request["body"])["To"]}))
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_API_URL": postmark.url + "/"}
    (student,) = students("s4bo", 1)
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Grades", body="Released.", channels=["email"],
                                        audience={"users": [student.username]})
    notification_fan_out(notification.pk)
    deliveries_send(list(Delivery.objects.filter(notification=notification).values_list("id", flat=True)))

    assert anymail_webhook(client, postmark_bounce("pm-bounce-1")).status_code == 200

    delivery = Delivery.objects.get(notification=notification)
    assert delivery.status == "failed" and delivery.last_error.startswith("bounced:")
