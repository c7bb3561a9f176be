"""Sessions and API tokens end with the credentials they were issued for: a new password (reset page, console),
a deactivation, or an administrator's "sign out everywhere" refuses every access and refresh token issued before."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client
from .conftest import make_user


def sign_in(username, password):
    response = APIClient().post(f"{API}auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def token_answers(tokens):
    """What the API says to a pair of tokens: (inbox with the access token, refresh, verify)."""
    client = APIClient()
    refresh = client.post(f"{API}auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json").status_code
    verify = client.post(f"{API}auth/token/verify/", {"token": tokens["access"]}, format="json").status_code
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    inbox = client.get(f"{API}me/inbox/")
    return inbox.status_code, refresh, verify, inbox.json().get("code")


def reset_password_by_email(student, admin_user, new_password):
    client = Client()
    client.post("/password-reset/", {"email": student.email})
    link = next(line for line in mail.outbox[-1].body.splitlines() if "/password-reset/" in line).strip()
    form = client.get(link.split("testserver", 1)[1], follow=True)
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302


def change_password_in_the_console(student, admin_user, new_password):
    client = Client()
    client.force_login(admin_user)
    done = client.post(f"/admin/accounts/user/{student.pk}/password/",
                       {"password1": new_password, "password2": new_password, "usable_password": "true"})
    assert done.status_code == 302


def deactivate_and_reactivate(student, admin_user, new_password):
    for active in (False, True):
        response = jwt_client(admin_user).post(f"{API}users/", {"users": [
            {"username": student.username, "is_active": active}]}, format="json")
        assert response.json()["summary"]["updated"] == 1


@pytest.mark.parametrize("end", [reset_password_by_email, change_password_in_the_console, deactivate_and_reactivate])
def test_it_refuses_tokens_issued_before_the_credentials_changed(student, admin_user, end):
    before = sign_in(student.username, "pw-s1000001")
    assert token_answers(before)[:3] == (200, 200, 200)
    before = sign_in(student.username, "pw-s1000001")

    end(student, admin_user, "a-new-long-password-42")

    assert token_answers(before) == (401, 401, 401, "token_revoked")
    password = "pw-s1000001" if end is deactivate_and_reactivate else "a-new-long-password-42"
    after = sign_in(student.username, password)
    assert token_answers(after)[:3] == (200, 200, 200)


def test_it_signs_a_user_out_everywhere_from_the_console_and_records_it(student, admin_user):
    browser = Client()
    assert browser.post("/login/", {"username": student.username, "password": "pw-s1000001"}).status_code == 302
    assert browser.get("/inbox/").status_code == 200
    tokens = sign_in(student.username, "pw-s1000001")
    console = Client()
    console.force_login(admin_user)

    response = console.post("/admin/accounts/user/", {"action": "sign_out_everywhere",
                                                      "_selected_action": [student.pk]}, follow=True)

    assert "1 user signed out everywhere." in response.content.decode()
    assert token_answers(tokens) == (401, 401, 401, "token_revoked")
    assert browser.get("/inbox/")["Location"].startswith("/login/")
    entry = LogEntry.objects.get(object_id=str(student.pk))
    assert entry.user == admin_user and "Signed out everywhere" in entry.get_change_message()
    assert console.get("/admin/").status_code == 200  # the administrator's own session is untouched
    assert token_answers(sign_in(student.username, "pw-s1000001"))[:3] == (200, 200, 200)


def test_it_keeps_tokens_when_signing_in_upgrades_the_password_hash(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                                 "django.contrib.auth.hashers.ScryptPasswordHasher"]
    user = make_user("s1000003")
    User.objects.filter(pk=user.pk).update(password=make_password("pw-s1000003", hasher="scrypt"))
    first = sign_in("s1000003", "pw-s1000003")  # rehashes the password with the preferred hasher
    assert User.objects.get(pk=user.pk).password.startswith("md5$")
    assert token_answers(first)[:3] == (200, 200, 200)
