"""A chunk sent at speed is still one message per recipient: parts rendered once per group and filled in
per recipient, several provider sessions per chunk, each message's outcome its own."""

import json
from urllib.parse import parse_qs, urlsplit

import http_ece
import pytest

from notifications.links import link_check
from notifications.models import Delivery

from .conftest import make_user
from .delivery_helpers import closed_breakers, students  # noqa: F401
from .test_channels import BrowserKeys, send, twilio, vapid  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("closed_breakers")]


def by_message_id(notification):
    return {d.message_id: d for d in Delivery.objects.filter(notification=notification).select_related("recipient")}


def test_it_sends_a_chunk_over_several_smtp_sessions_each_email_its_own(smtp_peer, admin_user, settings):
    settings.EMAIL_SESSIONS = 3
    users = students("s7100", 90)

    notification = send(admin_user, users, ["email"], title="Storm warning", body="Stay indoors.")

    deliveries = by_message_id(notification)
    assert set(d.status for d in deliveries.values()) == {"sent"}
    assert smtp_peer.connections == 3  # each session one connection, reused for its share of the chunk
    assert len(smtp_peer.sessions) == 3
    assert sorted(str(m["Message-ID"]) for m in smtp_peer.messages) == sorted(deliveries)  # one Message-ID each
    for message in smtp_peer.messages:
        delivery = deliveries[str(message["Message-ID"])]
        user = delivery.recipient
        assert message["To"] == user.email
        assert delivery.provider_message_id == delivery.message_id
        assert message["Subject"] == "Storm warning"
        plain = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert f"Hello {user.get_full_name()}," in plain and f"<p>Hello {user.get_full_name()},</p>" in html
        # Each recipient's own one-click unsubscribe link, in the header and in both parts.
        link = str(message["List-Unsubscribe"]).strip()[1:-1]
        token = urlsplit(link).path.rstrip("/").rsplit("/", 1)[1]
        check = link_check("unsubscribe", token)
        assert (check.problem, check.user_id, check.notification_id) == ("", user.pk, notification.pk)
        assert link in plain and f'href="{link}"' in html
        assert "FNph" not in message.as_string()  # no placeholder left


def test_it_escapes_each_recipients_own_name_in_the_html_part_only(smtp_peer, admin_user, settings):
    settings.EMAIL_SESSIONS = 2
    names = [("Ann", "<b>O'Neil & Co</b>"), ("Zoë", "Ünal"), ("Bob", "Smith"), ("Eve", '"Quote"')]
    users = [make_user(f"s72000{n}", first_name=first, last_name=last) for n, (first, last) in enumerate(names)]
    users += students("s7210", 60)

    notification = send(admin_user, users, ["email"], title="Fire drill <today> & tomorrow", body="Leave by <exit> B.")

    deliveries = by_message_id(notification)
    assert set(d.status for d in deliveries.values()) == {"sent"}
    for message in smtp_peer.messages:
        name = deliveries[str(message["Message-ID"])].recipient.get_full_name()
        plain = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert f"Hello {name}," in plain and "Leave by <exit> B." in plain
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
            '"', "&quot;").replace("'", "&#x27;")
        assert f"<p>Hello {escaped},</p>" in html and "Leave by &lt;exit&gt; B." in html
        assert "<title>Fire drill &lt;today&gt; &amp; tomorrow</title>" in html
        assert message["Subject"] == "Fire drill <today> & tomorrow"
    html_of = {deliveries[str(m["Message-ID"])].recipient.username: m.get_body(("html",)).get_content()
               for m in smtp_peer.messages}
    assert "<b>" not in html_of["s720000"].split("<body>")[1]
    assert "Hello Zoë Ünal," in html_of["s720001"]


def test_a_refused_address_among_good_ones_fails_alone_with_several_sessions(smtp_peer, admin_user, settings):
    settings.EMAIL_SESSIONS = 2
    users = students("s7300", 60)
    smtp_peer.refuse.add(users[17].email)

    notification = send(admin_user, users, ["email"])

    deliveries = Delivery.objects.filter(notification=notification)
    refused = deliveries.get(recipient=users[17])
    assert (refused.status, refused.last_error) == ("failed", "SMTP 550: refused")
    assert deliveries.filter(status="sent").count() == 59
    assert len(smtp_peer.messages) == 59


def test_it_sends_an_sms_chunk_over_several_sessions_one_outcome_each(twilio, admin_user, settings):
    settings.SMS_SESSIONS = 3
    users = students("s7500", 80)
    for n, user in enumerate(users):
        user.phone, user.phone_verified_at = f"+4479110{n:05d}", user.date_joined
    type(users[0]).objects.bulk_update(users, ["phone", "phone_verified_at"])

    notification = send(admin_user, users, ["sms"], body="Short.")

    deliveries = Delivery.objects.filter(notification=notification).select_related("recipient")
    assert len(twilio.requests) == 80
    assert sorted(r["form"]["To"] for r in twilio.requests) == sorted(u.phone for u in users)
    for delivery in deliveries:
        (request,) = [r for r in twilio.requests if r["form"]["To"] == delivery.recipient.phone]
        assert parse_qs(urlsplit(request["form"]["StatusCallback"]).query)["delivery"] == [str(delivery.pk)]
        assert delivery.status == "sent"
    assert len({d.provider_message_id for d in deliveries}) == 80  # each its own sid


def test_it_pushes_a_chunk_over_several_sessions_each_payload_to_its_own_browser(http_peer, vapid, admin_user,
                                                                                 settings):
    from channels_app.models import PushSubscription

    settings.PUSH_SESSIONS = 2
    push_service = http_peer(lambda request: (410 if request["path"].endswith("/gone") else 201, {}, b""))
    users = students("s7600", 60)
    browsers = {}
    for user in users:
        browsers[user.pk] = BrowserKeys()
        endpoint = f"{push_service.url}/push/{user.pk}" + ("/gone" if user == users[9] else "")
        PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=browsers[user.pk].p256dh,
                                        auth=browsers[user.pk].auth)

    notification = send(admin_user, users, ["push"])

    deliveries = {d.recipient_id: d for d in Delivery.objects.filter(notification=notification)}
    assert len(push_service.requests) == 60
    authorizations = set()
    for request in push_service.requests:
        user_id = int(request["path"].split("/")[2])
        payload = json.loads(http_ece.decrypt(request["body"], private_key=browsers[user_id].private_key,
                                              auth_secret=browsers[user_id].auth_secret, version="aes128gcm"))
        assert payload["delivery_id"] == deliveries[user_id].pk  # encrypted for this browser, about this delivery
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert f"k={vapid['VAPID_PUBLIC_KEY']}" in headers["authorization"]
        authorizations.add(headers["authorization"])
    assert len(authorizations) == 1  # one push service: its VAPID header signed once for the chunk
    gone = deliveries[users[9].pk]
    assert gone.status == "failed" and "subscription expired (410)" in gone.last_error
    assert {d.status for pk, d in deliveries.items() if pk != users[9].pk} == {"sent"}
    assert not PushSubscription.objects.filter(user=users[9]).exists()


def test_a_chunk_stopped_by_its_time_budget_records_every_email_its_sessions_sent(smtp_peer, admin_user, settings):
    settings.EMAIL_SESSIONS = 3
    settings.DELIVERY_RECORD_EVERY = 4
    settings.DELIVERY_TASK_SECONDS = 1
    smtp_peer.delay = 0.05  # a slow server: each session has a message in flight when the budget ends
    users = students("s7700", 90)

    notification = send(admin_user, users, ["email"])

    deliveries = by_message_id(notification)
    received = {str(m["Message-ID"]) for m in smtp_peer.messages}
    assert 0 < len(received) < 90
    # Whatever reached the server is recorded as sent, the rest handed back to the queue untried: no duplicate later.
    assert {mid for mid, d in deliveries.items() if d.status == "sent"} == received
    assert {d.status for mid, d in deliveries.items() if mid not in received} == {"queued"}
