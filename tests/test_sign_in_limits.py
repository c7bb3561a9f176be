"""Sign-in throttles and lockout at every door: the API token, the student pages (/login/), the console
(/admin/login/), and password reset requests. One per-address budget and one lockout per account, keyed on
the username as authentication matches it (trimmed, NFKC, any case)."""

import pytest
from django.core import mail
from rest_framework.test import APIClient

from .api_support import *  # noqa: F403
from .api_support import API


def api_sign_in(username, password):
    return APIClient().post(f"{API}auth/token/", {"username": username, "password": password}, format="json")


def page_sign_in(client, username, password, *, door="/login/"):
    return client.post(door, {"username": username, "password": password, "next": "/admin/"})


def signed_in(client):
    return "_auth_user_id" in client.session


def test_it_locks_out_an_account_on_the_api_whatever_the_spelling_of_its_username(student, settings):
    settings.LOCKOUT_FAILURES = 3
    for spelling in (" s1000001 ", "S1000001", "\ts1000001"):
        assert api_sign_in(spelling, "wrong").status_code == 401
    response = api_sign_in(" s1000001 ", "pw-s1000001")  # the serializer trims it: this would sign in
    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("door", ["/login/", "/admin/login/"])
def test_it_locks_out_an_account_on_the_sign_in_pages(client, admin_user, settings, door):
    settings.LOCKOUT_FAILURES = 3
    for _ in range(3):
        assert page_sign_in(client, "a3000001", "wrong", door=door).status_code == 200
    response = page_sign_in(client, " A3000001", "pw-a3000001", door=door)
    assert response.status_code == 200
    assert "Too many attempts. Please wait 15 minutes and try again." in response.content.decode()
    assert not signed_in(client)


def test_it_shares_one_lockout_between_the_pages_the_console_and_the_api(client, admin_user, settings):
    settings.LOCKOUT_FAILURES = 3
    page_sign_in(client, "a3000001", "wrong")
    page_sign_in(client, "a3000001 ", "wrong", door="/admin/login/")
    assert api_sign_in("a3000001", "wrong").status_code == 401
    assert api_sign_in("a3000001", "pw-a3000001").status_code == 429
    assert page_sign_in(client, "a3000001", "pw-a3000001").status_code == 200
    assert not signed_in(client)


def test_it_says_so_in_french_on_the_french_page(client, student, settings):
    settings.LOCKOUT_FAILURES = 1
    page_sign_in(client, "s1000001", "wrong")
    response = client.post("/login/", {"username": "s1000001", "password": "pw-s1000001"},
                           HTTP_ACCEPT_LANGUAGE="fr")
    assert "Trop de tentatives. Veuillez patienter 15 minutes puis réessayer." in response.content.decode()


def test_it_throttles_sign_ins_per_address_across_accounts_and_doors(client, student, admin_user, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "login": "3/min"}
    page_sign_in(client, "s1000009", "guess")
    page_sign_in(client, "s1000008", "guess", door="/admin/login/")
    assert api_sign_in("s1000007", "guess").status_code == 401
    response = page_sign_in(client, "s1000001", "pw-s1000001")
    assert "Too many attempts." in response.content.decode()
    assert not signed_in(client)
    assert api_sign_in("s1000001", "pw-s1000001").status_code == 429


def test_it_lets_a_right_password_clear_the_failures_on_the_pages(client, student, settings):
    settings.LOCKOUT_FAILURES = 2
    page_sign_in(client, "s1000001", "wrong")
    assert page_sign_in(client, "s1000001", "pw-s1000001").status_code == 302
    client.logout()
    page_sign_in(client, "s1000001", "wrong")
    assert page_sign_in(client, "s1000001", "pw-s1000001").status_code == 302


def test_it_throttles_password_reset_requests_per_address(client, student, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "password_reset": "2/hour"}
    for _ in range(2):
        assert client.post("/password-reset/", {"email": student.email}).status_code == 302
    response = client.post("/password-reset/", {"email": student.email})
    assert response.status_code == 200
    assert "Too many attempts." in response.content.decode()
    assert len(mail.outbox) == 2
