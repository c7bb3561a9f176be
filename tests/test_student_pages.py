"""The student pages through Django's test client: access rules, inbox, preferences, push, headers."""

import json
from datetime import time

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from channels_app.models import PushSubscription
from notifications.models import InboxMessage, Notification, Preference
from notifications.engine.planning import all_category_defaults

from .conftest import make_user
from .delivery_helpers import BrowserKeys


def make_messages(user, count, *, category="announcement", requires_ack=False, title="Notice"):
    notifications = Notification.objects.bulk_create([
        Notification(notifier="academic", category=category, title=f"{title} {n}", body=f"Body {n}",
                     requires_ack=requires_ack, status="sent")
        for n in range(count)
    ])
    InboxMessage.objects.bulk_create([
        InboxMessage(notification=notification, recipient=user, title=notification.title, body=notification.body,
                     category=category)
        for notification in notifications
    ])
    return notifications


@pytest.fixture
def signed_in(client, student):
    client.force_login(student)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/inbox/", "/inbox/1/", "/preferences/", "/phone/"])
def test_it_sends_anonymous_visitors_to_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/push/subscriptions/", "/push/subscriptions/remove/", "/preferences/", "/phone/",
                                 "/inbox/1/"])
def test_it_refuses_posts_from_anonymous_visitors(client, student, url):
    PushSubscription.objects.create(user=student, endpoint="https://push.example.net/a", p256dh="k", auth="a")

    response = client.post(url, data=json.dumps({"endpoint": "https://push.example.net/a"}),
                           content_type="application/json")

    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert PushSubscription.objects.count() == 1


@pytest.mark.django_db
def test_it_shows_dates_in_the_students_time_zone(signed_in, student):
    from datetime import datetime, timezone

    [notification] = make_messages(student, 1)
    InboxMessage.objects.update(created_at=datetime(2026, 3, 2, 23, 30, tzinfo=timezone.utc))
    student.timezone = "Asia/Tokyo"
    student.save()

    inbox = signed_in.get("/inbox/").content.decode()
    detail = signed_in.get(f"/inbox/{notification.pk}/").content.decode()

    assert "March 3, 2026, 8:30 a.m." in inbox and "March 3, 2026, 8:30 a.m." in detail
    assert 'datetime="2026-03-03T08:30:00+09:00"' in inbox


@pytest.mark.django_db
def test_it_answers_404_for_another_students_notification(signed_in):
    other = make_user("s1000002")
    [notification] = make_messages(other, 1)

    response = signed_in.get(f"/inbox/{notification.pk}/")
    assert response.status_code == 404 and "Page not found" in response.content.decode()
    assert signed_in.post(f"/inbox/{notification.pk}/", {"acknowledge": "1"}).status_code == 404
    assert InboxMessage.objects.get(notification=notification).acknowledged_at is None
    assert InboxMessage.objects.get(notification=notification).read_at is None


@pytest.mark.django_db
def test_it_shows_the_inbox_newest_first_with_unread_marked_and_counted(signed_in, student):
    make_messages(student, 3)
    first = InboxMessage.objects.order_by("id").first()
    first.read_at = first.created_at
    first.save()

    html = signed_in.get("/inbox/").content.decode()

    assert html.index("Notice 2") < html.index("Notice 1") < html.index("Notice 0")
    assert html.count('class="unread"') == 2
    assert "2 unread" in html


@pytest.mark.django_db
def test_it_filters_the_inbox_by_category_and_pages_it(signed_in, student):
    make_messages(student, 25, category="grade", title="Grade")
    make_messages(student, 2, category="timetable", title="Room")

    timetable = signed_in.get("/inbox/?category=timetable").content.decode()
    first_page = signed_in.get("/inbox/?category=grade").content.decode()
    second_page = signed_in.get("/inbox/?category=grade&page=2").content.decode()

    assert "Room 1" in timetable and "Grade" not in timetable.split("<main")[1].split("<option")[0]
    assert first_page.count('class="unread"') == 20
    assert "Page 1 of 2" in first_page
    assert second_page.count('class="unread"') == 5


@pytest.mark.django_db
def test_it_shows_the_inbox_in_a_bounded_number_of_queries(signed_in, student, django_assert_max_num_queries):
    # session, user, page count, the page's messages with their notifications, the unread count
    for count in (3, 60):
        make_messages(student, count, requires_ack=True)
        with django_assert_max_num_queries(5):
            response = signed_in.get("/inbox/?category=announcement")
        assert response.status_code == 200


@pytest.mark.django_db
def test_it_marks_a_notification_read_when_opened_and_acknowledges_on_request(signed_in, student):
    [notification] = make_messages(student, 1, requires_ack=True)

    page = signed_in.get(f"/inbox/{notification.pk}/").content.decode()
    message = InboxMessage.objects.get(notification=notification)
    assert message.read_at is not None and message.acknowledged_at is None
    assert "Body 0" in page and 'name="acknowledge"' in page

    response = signed_in.post(f"/inbox/{notification.pk}/", {"acknowledge": "1"}, follow=True)

    message.refresh_from_db()
    assert message.acknowledged_at is not None
    assert "You acknowledged this on" in response.content.decode()


@pytest.mark.django_db
def test_it_does_not_acknowledge_a_notification_that_does_not_ask_for_it(signed_in, student):
    [notification] = make_messages(student, 1, requires_ack=False)

    signed_in.post(f"/inbox/{notification.pk}/", {"acknowledge": "1"})

    assert InboxMessage.objects.get(notification=notification).acknowledged_at is None


def grid_post(**overrides):
    """The preferences form as the page submits it with nothing changed from the built-in defaults."""
    data = {"language": "en", "timezone": "UTC", "digest_hour": "18", "quiet_hours_start": "", "quiet_hours_end": ""}
    for category, channels in all_category_defaults().items():
        if category == "security":
            continue
        for channel, (enabled, digest) in channels.items():
            if enabled:
                data[f"{category}__{channel}"] = "on"
            if channel == "email" and digest:
                data[f"{category}__digest"] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.django_db
def test_it_saves_preferences_and_says_what_changed(signed_in, student):
    response = signed_in.post("/preferences/", grid_post(**{
        "grade__email": None, "grade__sms": "on", "quiet_hours_start": "22:00", "quiet_hours_end": "07:00",
        "timezone": "Europe/Paris", "digest_hour": "8"}), follow=True)

    html = response.content.decode()
    assert Preference.objects.get(user=student, category="grade", channel="email").enabled is False
    assert Preference.objects.get(user=student, category="grade", channel="sms").enabled is True
    assert Preference.objects.filter(user=student).count() == 2
    student.refresh_from_db()
    assert (student.quiet_hours_start, student.quiet_hours_end) == (time(22), time(7))
    assert (student.timezone, student.digest_hour) == ("Europe/Paris", 8)
    assert "Grade release by Email: off" in html
    assert "Grade release by SMS: on" in html
    assert "Time zone: Europe/Paris" in html


@pytest.mark.django_db
def test_it_says_nothing_changed_when_nothing_did(signed_in, student):
    response = signed_in.post("/preferences/", grid_post(), follow=True)

    assert "Nothing changed." in response.content.decode()
    assert not Preference.objects.filter(user=student).exists()


@pytest.mark.django_db
def test_it_keeps_security_alerts_on_whatever_is_posted(signed_in, student):
    page = signed_in.get("/preferences/").content.decode()
    signed_in.post("/preferences/", grid_post(security__email=None, security__sms=None))

    assert "Always on" in page and 'name="security__email"' not in page
    assert not Preference.objects.filter(user=student, category="security").exists()


@pytest.mark.django_db
def test_it_refuses_half_given_quiet_hours_and_keeps_the_rest_unsaved(signed_in, student):
    response = signed_in.post("/preferences/", grid_post(quiet_hours_start="22:00", grade__email=None))

    assert response.status_code == 200
    assert "Give both the start and the end" in response.content.decode()
    assert not Preference.objects.filter(user=student).exists()


def push_body(endpoint="https://fcm.googleapis.com/fcm/send/abc"):
    keys = BrowserKeys()
    return {"endpoint": endpoint, "keys": {"p256dh": keys.p256dh, "auth": keys.auth}}


@pytest.mark.django_db
def test_it_stores_and_removes_a_push_subscription_for_the_signed_in_user(signed_in, student, push_dns):
    body = push_body()

    created = signed_in.post("/push/subscriptions/", data=json.dumps(body), content_type="application/json")
    assert created.status_code == 201
    assert PushSubscription.objects.get(user=student).endpoint == body["endpoint"]

    removed = signed_in.post("/push/subscriptions/remove/", data=json.dumps({"endpoint": body["endpoint"]}),
                             content_type="application/json")
    assert removed.json() == {"removed": 1}
    assert not PushSubscription.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_push_subscription_to_a_plain_http_or_malformed_endpoint(signed_in, push_dns):
    plain = signed_in.post("/push/subscriptions/", data=json.dumps(push_body("http://10.0.0.1/x")),
                           content_type="application/json")
    short_key = {"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}
    bad_keys = signed_in.post("/push/subscriptions/", data=json.dumps(short_key), content_type="application/json")
    not_json = signed_in.post("/push/subscriptions/", data="nope", content_type="application/json")

    assert (plain.status_code, bad_keys.status_code, not_json.status_code) == (400, 400, 400)
    assert "endpoint" in plain.json()["detail"] and "p256dh" in bad_keys.json()["detail"]
    assert not PushSubscription.objects.exists()


@pytest.mark.django_db
def test_it_requires_the_csrf_token_to_subscribe_to_push(student):
    client = Client(enforce_csrf_checks=True)
    client.force_login(student)

    response = client.post("/push/subscriptions/", data=json.dumps(push_body()), content_type="application/json")

    assert response.status_code == 403
    assert not PushSubscription.objects.exists()


@pytest.mark.django_db
def test_it_removes_only_the_users_own_push_subscription_from_the_list(signed_in, student):
    other = make_user("s1000002")
    theirs = PushSubscription.objects.create(user=other, endpoint="https://push.example.net/theirs",
                                             p256dh="k", auth="a")

    signed_in.post("/push/subscriptions/remove/", {"id": theirs.pk})

    assert PushSubscription.objects.filter(pk=theirs.pk).exists()


@pytest.mark.django_db
def test_it_serves_the_service_worker_from_the_root_of_the_site(client):
    response = client.get("/sw.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Service-Worker-Allowed"] == "/"
    assert b"showNotification" in response.content


@pytest.mark.django_db
def test_it_sends_security_headers_with_a_policy_that_allows_no_inline_script(client):
    response = client.get("/login/")

    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "<script>" not in response.content.decode()


@pytest.mark.django_db
def test_it_signs_in_and_lands_on_the_inbox(client, student):
    response = client.post("/login/", {"username": "s1000001", "password": "pw-s1000001"})

    assert response.status_code == 302 and response["Location"] == "/inbox/"


@pytest.mark.django_db
def test_it_emails_a_password_reset_link_that_lets_the_student_choose_a_new_password(client, student):
    response = client.post("/password-reset/", {"email": student.email})
    assert response["Location"] == "/password-reset/sent/"
    [email] = mail.outbox
    link = next(line for line in email.body.splitlines() if "/password-reset/" in line).strip()
    path = link.split("testserver", 1)[1]

    form = client.get(path, follow=True)
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "a-new-long-password-42",
                                                   "new_password2": "a-new-long-password-42"})

    assert email.subject == "Reset your FlashNotify password"
    assert done["Location"] == reverse("password_reset_complete")
    student.refresh_from_db()
    assert student.check_password("a-new-long-password-42")


def test_it_marks_session_and_csrf_cookies_secure_in_production():
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items()
           if key not in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT")}
    env.update(DEBUG="false", SECRET_KEY="x" * 50, DJANGO_SETTINGS_MODULE="flashnotify.settings")
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
         "s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_HTTPONLY, s.SECURE_SSL_REDIRECT)"],
        env=env, capture_output=True, text=True, check=True).stdout.split()

    assert out == ["True"] * 5
