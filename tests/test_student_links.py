"""Signed links from emails: acknowledge and one-click unsubscribe, with tampered and expired tokens."""

import re
import time
from unittest import mock

import pytest
from django.test import Client
from django.utils import translation

from notifications.models import InboxMessage, Notification, Preference
from notifications.links import MAX_AGE, link_token

from .conftest import make_user


@pytest.fixture
def alert(student):
    notification = Notification.objects.create(notifier="security", category="security", title="Gas leak in B2",
                                               body="Leave building B2 now.", requires_ack=True, status="sent")
    InboxMessage.objects.create(notification=notification, recipient=student, title=notification.title,
                                body=notification.body, category="security")
    return notification


@pytest.fixture
def grade(student):
    return Notification.objects.create(notifier="academic", category="grade", title="Marks out", body="See them.",
                                       status="sent")


def token(action, user, notification, *, age=0):
    """A token signed `age` seconds ago (a controlled clock for the signer's timestamp)."""
    with mock.patch("django.core.signing.time.time", return_value=time.time() - age):
        return link_token(action, user_id=user.pk, notification_id=notification.pk)


@pytest.mark.django_db
def test_it_asks_before_acknowledging_and_acknowledges_on_post_without_sign_in(client, student, alert):
    url = f"/ack/{token('acknowledge', student, alert)}/"

    shown = client.get(url)
    assert InboxMessage.objects.get(notification=alert).acknowledged_at is None
    done = client.post(url)

    assert shown.status_code == 200 and "Acknowledge" in shown.content.decode()
    assert "Acknowledged on" in done.content.decode()
    assert InboxMessage.objects.get(notification=alert).acknowledged_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["acknowledge", "unsubscribe"])
def test_it_shows_a_clear_page_for_a_tampered_token(client, student, alert, action):
    good = token(action, student, alert)
    tampered = good.replace(f"{student.pk}:", f"{student.pk + 1}:", 1)
    prefix = "ack" if action == "acknowledge" else "unsubscribe"

    for bad in (tampered, good[:-2] + ("AA" if not good.endswith("AA") else "BB"), "garbage"):
        response = client.post(f"/{prefix}/{bad}/")
        assert response.status_code == 400
        assert "This link is not valid" in response.content.decode()
    assert InboxMessage.objects.get(notification=alert).acknowledged_at is None
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_it_shows_a_clear_page_for_an_expired_acknowledge_token(client, student, alert):
    old = token("acknowledge", student, alert, age=MAX_AGE["acknowledge"] + 60)

    response = client.post(f"/ack/{old}/")

    assert response.status_code == 400
    assert "This link has expired" in response.content.decode()
    assert InboxMessage.objects.get(notification=alert).acknowledged_at is None


@pytest.mark.django_db
def test_it_shows_a_clear_page_for_an_expired_unsubscribe_token(client, student, grade):
    old = token("unsubscribe", student, grade, age=MAX_AGE["unsubscribe"] + 60)

    response = client.post(f"/unsubscribe/{old}/", "List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400 and "This link has expired" in response.content.decode()
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_it_does_not_accept_an_acknowledge_token_as_an_unsubscribe_token(client, student, grade):
    wrong_kind = token("acknowledge", student, grade)

    response = client.post(f"/unsubscribe/{wrong_kind}/")

    assert response.status_code == 400
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_it_does_not_unsubscribe_on_get_so_link_scanners_change_nothing(client, student, grade):
    response = client.get(f"/unsubscribe/{token('unsubscribe', student, grade)}/")

    assert response.status_code == 200 and "Stop receiving “Grade release” emails?" in response.content.decode()
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_it_unsubscribes_with_an_rfc8058_one_click_post_without_csrf_or_session(student, grade):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)

    response = client.post(f"/unsubscribe/{token('unsubscribe', student, grade)}/", "List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    preference = Preference.objects.get(user=student, category="grade", channel="email")
    assert preference.enabled is False


@pytest.mark.django_db
def test_it_explains_that_security_alerts_cannot_be_unsubscribed(client, student, alert):
    response = client.post(f"/unsubscribe/{token('unsubscribe', student, alert)}/")

    assert "cannot be turned off" in response.content.decode()
    assert not Preference.objects.exists()


@pytest.mark.django_db
def test_it_answers_a_link_in_the_language_of_the_student_it_was_sent_to(client, grade):
    french = make_user("s1000009", language="fr")

    response = client.get(f"/unsubscribe/{token('unsubscribe', french, grade)}/", HTTP_ACCEPT_LANGUAGE="en")

    assert '<html lang="fr">' in response.content.decode()
    assert "Se désabonner" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("language, heading", [("en", "This form could not be sent"),
                                               ("fr", "Ce formulaire n’a pas pu être envoyé")])
def test_it_answers_a_form_without_its_csrf_token_with_the_sites_own_page(student, alert, language, heading):
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE=language)

    with translation.override(None):  # the request activates its language in this thread: leave it as found
        response = client.post(f"/ack/{token('acknowledge', student, alert)}/")

    page = response.content.decode()
    assert response.status_code == 403
    assert heading in page and f'<html lang="{language}">' in page and "/static/css/site" in page
    assert "CSRF verification failed" not in page  # not Django's bare page
    assert InboxMessage.objects.get(notification=alert).acknowledged_at is None


@pytest.mark.django_db
def test_it_previews_with_placeholder_links_that_act_for_nobody(client, student, admin_user, settings):
    from channels_app.constants import Category

    from .api_support import API, jwt_client

    notification = Notification.objects.create(
        notifier="academic", category=Category.GRADE, title="Marks out", body="See them.", requires_ack=True,
        status="sent", channels=["email"], audience={"users": [student.username]}, sender=admin_user)
    InboxMessage.objects.create(notification=notification, recipient=student, title=notification.title,
                                body=notification.body, category=Category.GRADE)

    preview = jwt_client(admin_user).get(f"{API}notifications/{notification.pk}/preview/",
                                         {"recipient": student.username}).json()

    text = preview["email"]["text"] + preview["email"]["html"]
    ack, unsubscribe = f"{settings.SITE_URL}/ack/preview/", f"{settings.SITE_URL}/unsubscribe/preview/"
    assert ack in text and unsubscribe in text
    assert {token for _, token in re.findall(r"/(ack|unsubscribe)/([^/\s\"'<>]+)/", text)} == {"preview"}
    for url in (ack, unsubscribe):
        response = client.post(url.removeprefix(settings.SITE_URL), "List-Unsubscribe=One-Click",
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert "This is a preview link" in response.content.decode()
    assert InboxMessage.objects.get(notification=notification).acknowledged_at is None
    assert not Preference.objects.exists()
