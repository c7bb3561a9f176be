"""One error shape for every failure; oversized and malformed bodies get 413/400, never 500."""

import json

import pytest
from django.test import RequestFactory
from django.utils.module_loading import import_string

from notifications.models import Notification

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, send_body
from .conftest import make_user

SHAPE = {"status", "code", "message", "errors"}


def test_it_reports_field_errors_in_the_error_shape(staff_user, cohort):
    response = jwt_client(staff_user).post(f"{API}notifications/", {"notifier": "nope", "audience": {}},
                                           format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == SHAPE and body["status"] == 400 and body["code"] == "invalid"
    assert {"notifier", "title", "body"} <= set(body["errors"])
    assert all(isinstance(m, list) and all(isinstance(s, str) for s in m) for m in body["errors"].values())


def test_it_names_nested_fields_with_dots(staff_user, cohort):
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(audience={"roles": ["King"]}),
                                           format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["audience.roles.0"]


def test_it_answers_413_for_an_oversized_body(staff_user, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(body="x" * 2000), format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.parametrize("raw", [b"{not json", b"[" * 100_000, b'{"title": NaN}', b"\xff\xfe"])
def test_it_answers_400_for_a_malformed_body(staff_user, raw):
    response = jwt_client(staff_user).post(f"{API}notifications/", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_it_answers_400_for_nul_characters_in_data(staff_user, cohort):
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(data={"course": "a\x00b"}),
                                           format="json")
    assert response.status_code == 400
    assert "data" in response.json()["errors"]


def test_it_answers_415_for_a_form_body(staff_user):
    response = jwt_client(staff_user).post(f"{API}notifications/", {"title": "x"})  # multipart
    assert response.status_code == 415
    assert set(response.json()) == SHAPE


def test_it_answers_404_in_the_error_shape_for_unknown_api_paths(staff_user):
    response = jwt_client(staff_user).get(f"{API}notifications/99999999999999999999999/")
    assert response.status_code == 404
    assert response.json() == {"status": 404, "code": "not_found", "message": "Not found.", "errors": {}}


def test_it_answers_405_in_the_error_shape(staff_user):
    response = jwt_client(staff_user).delete(f"{API}notifications/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_it_answers_429_with_retry_after_when_throttled(student, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "user": "2/min"}
    client = jwt_client(student)
    assert client.get(f"{API}me/inbox/").status_code == 200
    assert client.get(f"{API}me/inbox/").status_code == 200
    response = client.get(f"{API}me/inbox/")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("value", ["0525-06-27T03:32:04+22:50", "0001-01-01T00:00:00+23:00", "9999-12-31T23:59:59-23:59"])
def test_it_accepts_or_refuses_odd_dates_in_filters_without_a_500(admin_user, value):
    response = jwt_client(admin_user).get(f"{API}notifications/", {"created_after": value})
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert list(response.json()["errors"]) == ["created_after"]


@pytest.mark.parametrize("path,position", [("notifications/", "not-a-date"), ("notifications/", "2020-01-01T00:00:00+22:50"),
                                           ("me/inbox/", "0001-01-01T00:00:00+23:00")])
def test_it_answers_404_for_a_forged_cursor(admin_user, path, position):
    import base64
    from urllib.parse import urlencode

    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    response = jwt_client(admin_user).get(f"{API}{path}", {"cursor": cursor})
    assert response.status_code in (200, 404)
    assert set(response.json()) >= ({"results"} if response.status_code == 200 else {"status", "code"})


def test_it_answers_a_csrf_failure_under_the_api_in_the_error_shape(settings):
    # The API's own views check CSRF themselves (SessionAuthentication); this is the site-wide
    # failure view, for any form-handling view mounted under /api/.
    csrf_failure = import_string(settings.CSRF_FAILURE_VIEW)

    response = csrf_failure(RequestFactory().post(f"{API}me/preferences/"), reason="CSRF cookie not set.")

    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"status": 403, "code": "csrf_failed",
                                            "message": "CSRF Failed: CSRF cookie not set.", "errors": {}}


def test_it_refuses_a_cohort_code_with_a_nul_byte_with_a_field_error(admin_user):
    response = jwt_client(admin_user).post(f"{API}api-keys/", {"name": "SIS", "scopes": ["send"],
                                                                 "cohorts": ["cs\x00101"]}, format="json")

    assert response.status_code == 400
    assert "cohorts" in response.json()["errors"]


@pytest.mark.parametrize("title, what", [
    ("Room change\nBcc: x@y", "a line break"),
    ("Room\rchange", "a carriage return"),
    ("Room\tchange", "a tab"),
    ("Room \x1b[2J", "U+001B"),
    ("Room\x85change", "U+0085"),
])
def test_it_refuses_control_characters_in_a_title_with_a_field_error(staff_user, cohort, title, what):
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(title=title), format="json")

    assert response.status_code == 400
    body = response.json()
    assert set(body) == SHAPE and list(body["errors"]) == ["title"]
    assert what in body["errors"]["title"][0]
    assert Notification.objects.count() == 0


def test_it_keeps_line_breaks_and_tabs_in_a_body_and_refuses_other_controls(staff_user, cohort):
    client = jwt_client(staff_user)

    refused = client.post(f"{API}notifications/", send_body(body="Room B12.\x07"), format="json")
    accepted = client.post(f"{API}notifications/", send_body(body="Room B12.\r\n\tBring a pen."), format="json")

    assert refused.status_code == 400 and "U+0007" in refused.json()["errors"]["body"][0]
    assert accepted.status_code == 201, accepted.json()


def test_it_names_unknown_usernames_and_lists_every_problem(staff_user, cohort):
    response = jwt_client(staff_user).post(f"{API}notifications/", send_body(
        notifier="security", category="grade", title="Gas\nleak", audience={"users": ["nobody99", "ghost"]}),
        format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"category", "title", "data", "audience"}
    assert errors["audience"] == ["Unknown user(s): ghost, nobody99."]
    assert "severity" in errors["data"][0]


def test_each_user_has_a_budget_of_their_own(student, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "user": "2/min"}
    client, theirs = jwt_client(student), jwt_client(make_user("s1000997"))

    assert [client.get(f"{API}me/inbox/").status_code for _ in range(3)] == [200, 200, 429]
    assert [theirs.get(f"{API}me/inbox/").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get(f"{API}me/inbox/").status_code == 429
