"""Each way in: JWT (rotation, blacklist, logout), API keys (revocation, expiry, usage), sessions with CSRF,
and the throttles and lockout on failed attempts."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, key_client


def obtain(client, username, password):
    return client.post(f"{API}auth/token/", {"username": username, "password": password}, format="json")


def test_it_issues_jwt_that_authenticates(student):
    client = APIClient()
    response = obtain(client, student.username, "pw-" + student.username)
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert client.get(f"{API}me/inbox/").status_code == 200
    verify = client.post(f"{API}auth/token/verify/", {"token": response.json()["access"]}, format="json")
    assert verify.status_code == 200


def test_it_rotates_refresh_tokens_and_refuses_the_used_one(student):
    client = APIClient()
    first = obtain(client, student.username, "pw-" + student.username).json()
    rotated = client.post(f"{API}auth/token/refresh/", {"refresh": first["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert rotated.json()["refresh"] != first["refresh"]
    replay = client.post(f"{API}auth/token/refresh/", {"refresh": first["refresh"]}, format="json")
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_not_valid"
    again = client.post(f"{API}auth/token/refresh/", {"refresh": rotated.json()["refresh"]}, format="json")
    assert again.status_code == 200


def test_it_blacklists_the_refresh_token_on_logout(student):
    client = APIClient()
    tokens = obtain(client, student.username, "pw-" + student.username).json()
    assert client.post(f"{API}auth/logout/", {"refresh": tokens["refresh"]}, format="json").status_code == 204
    after = client.post(f"{API}auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert after.status_code == 401


def test_it_refuses_a_bad_or_missing_token_with_401(student):
    client = APIClient()
    assert client.get(f"{API}me/inbox/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = client.get(f"{API}me/inbox/")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_authenticates_an_api_key_and_notes_its_use_once_per_window(admin_user, cohort):
    client = key_client(admin_user, ["read_deliveries"])
    assert client.get(f"{API}notifications/").status_code == 200
    key = ApiKey.objects.get(pk=client.api_key.pk)
    assert key.last_used_at is not None
    first_use = key.last_used_at
    assert client.get(f"{API}notifications/").status_code == 200
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first_use  # no write per request
    assert key.hashed_key != client._credentials["HTTP_AUTHORIZATION"].split()[1]


def test_it_refuses_a_revoked_key_at_once(admin_user):
    client = key_client(admin_user, ["read_deliveries"])
    assert client.get(f"{API}notifications/").status_code == 200
    staff_client = jwt_client(admin_user)
    assert staff_client.delete(f"{API}api-keys/{client.api_key.pk}/").status_code == 204
    response = client.get(f"{API}notifications/")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_revoked"


def test_it_refuses_an_expired_key(admin_user):
    client = key_client(admin_user, ["read_deliveries"])
    ApiKey.objects.filter(pk=client.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(f"{API}notifications/")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_expired"


def test_it_refuses_an_unknown_key(admin_user):
    real = key_client(admin_user, ["read_deliveries"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {real.api_key.prefix}.wrong-secret")
    response = client.get(f"{API}notifications/")
    assert response.status_code == 401
    assert response.json() == {"status": 401, "code": "invalid_api_key", "message": "Invalid API key.", "errors": {}}


def test_it_locks_out_a_key_prefix_after_repeated_bad_secrets(admin_user, settings):
    settings.LOCKOUT_FAILURES = 3
    real = key_client(admin_user, ["read_deliveries"])
    raw = real._credentials["HTTP_AUTHORIZATION"]
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION=f"Api-Key {real.api_key.prefix}.guess")
    for _ in range(3):
        assert guesser.get(f"{API}notifications/").status_code == 401
    locked = real.get(f"{API}notifications/")
    assert locked.status_code == 429
    assert locked.json()["code"] == "locked_out"
    assert int(locked["Retry-After"]) > 0
    assert raw.startswith("Api-Key ")


def test_it_throttles_failed_key_attempts_per_address(admin_user, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "api_key_failure": "2/min"}
    guesser = APIClient()
    for n in range(2):
        guesser.credentials(HTTP_AUTHORIZATION=f"Api-Key nope{n}.x")
        assert guesser.get(f"{API}notifications/").status_code == 401
    response = guesser.get(f"{API}notifications/")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert "Retry-After" in response


def test_it_locks_out_an_account_after_repeated_failed_logins(student, settings):
    settings.LOCKOUT_FAILURES = 3
    client = APIClient()
    for _ in range(3):
        assert obtain(client, student.username, "wrong").status_code == 401
    response = obtain(client, student.username, "pw-" + student.username)
    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"
    assert int(response["Retry-After"]) > 0


def test_it_throttles_logins_per_address(student, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "login": "2/min"}
    client = APIClient()
    assert obtain(client, student.username, "pw-" + student.username).status_code == 200
    assert obtain(client, student.username, "pw-" + student.username).status_code == 200
    response = obtain(client, student.username, "pw-" + student.username)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_it_accepts_a_session_and_enforces_csrf_on_writes(student):
    client = APIClient(enforce_csrf_checks=True)
    client.get("/login/")  # sets the csrftoken cookie, as the site's pages do
    client.force_login(student)
    assert client.get(f"{API}me/inbox/").status_code == 200
    refused = client.patch(f"{API}me/preferences/", {"preferences": []}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]
    token = client.cookies["csrftoken"].value
    allowed = client.patch(f"{API}me/preferences/", {"preferences": [
        {"category": "grade", "channel": "sms", "enabled": False}]}, format="json", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == 200


def test_it_creates_a_key_with_the_command_and_shows_it_once(admin_user, capsys):
    call_command("create_api_key", admin_user.username, "--name", "SIS", "--scope", "send",
                 "--scope", "read_deliveries", "--expires-days", "30")
    raw = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(name="SIS")
    assert raw.startswith(key.prefix + ".")
    assert key.hashed_key == ApiKey.hash(raw) and raw not in key.hashed_key
    assert key.scopes == ["read_deliveries", "send"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get(f"{API}notifications/").status_code == 200


def test_it_creates_a_key_in_the_admin_and_shows_it_once(admin_user, client):
    client.force_login(admin_user)
    response = client.post("/admin/accounts/apikey/add/", {
        "user": admin_user.pk, "name": "LMS", "scopes": ["send"], "expires_at_0": "", "expires_at_1": "",
        "revoked_at_0": "", "revoked_at_1": ""})
    assert response.status_code == 200, response.content[:2000]
    key = ApiKey.objects.get(name="LMS")
    raw = response.context["raw_key"]
    assert raw.startswith(key.prefix + ".") and ApiKey.hash(raw) == key.hashed_key
    assert raw in response.content.decode()
    assert raw not in client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()


@pytest.mark.parametrize("scopes,expected", [(["send"], 201), (["manage_users"], 400)])
def test_it_lets_staff_create_keys_with_their_scopes_only(staff_user, cohort, scopes, expected):
    client = jwt_client(staff_user)
    response = client.post(f"{API}api-keys/", {"name": "LMS", "scopes": scopes, "cohorts": [cohort.code]},
                           format="json")
    assert response.status_code == expected, response.json()
    if expected == 201:
        body = response.json()
        assert body["key"].startswith(body["prefix"] + ".")
        listed = client.get(f"{API}api-keys/").json()["results"]
        assert [k["prefix"] for k in listed] == [body["prefix"]] and "key" not in listed[0]


def test_it_ignores_a_forged_forwarded_address_when_throttling(student, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "login": "1/min"}
    client = APIClient()
    assert obtain(client, student.username, "pw-" + student.username).status_code == 200
    forged = client.post(f"{API}auth/token/", {"username": student.username, "password": "x"}, format="json",
                         HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert forged.status_code == 429


def test_it_serves_the_signed_twilio_webhook_under_the_api_too(settings, admin_user, cohort):
    from twilio.request_validator import RequestValidator

    from notifications.models import Delivery
    from notifications.services import notification_send

    settings.TWILIO_AUTH_TOKEN = "twilio-test-token"
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade", title="t",
                                        body="b", audience={"users": [admin_user.username]}, channels=["sms"])
    delivery = Delivery.objects.create(notification=notification, recipient=admin_user, channel="sms",
                                       status="sent", provider_message_id="SM123")
    params = {"MessageSid": "SM123", "MessageStatus": "delivered"}
    path = f"{API}webhooks/twilio/status/"
    signature = RequestValidator("twilio-test-token").compute_signature(settings.SITE_URL + path, params)
    client = APIClient()
    assert client.post(path, params, HTTP_X_TWILIO_SIGNATURE="forged").status_code == 403
    assert client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 204
    assert Delivery.objects.get(pk=delivery.pk).status == "delivered"
