"""Private answers are not cached: every response to a signed-in user or an authenticated API call says
Cache-Control: private, no-store; public files and the health check are left to their own headers."""

import pytest

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client, key_client


def directives(response):
    return {part.strip() for part in response.headers.get("Cache-Control", "").split(",") if part.strip()}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/inbox/", "/preferences/", "/phone/"])
def test_it_keeps_signed_in_pages_out_of_every_cache(client, student, path):
    client.force_login(student)

    response = client.get(path)

    assert response.status_code == 200
    assert {"private", "no-store"} <= directives(response)


@pytest.mark.django_db
def test_it_keeps_the_api_inbox_out_of_every_cache_with_a_jwt(student):
    response = jwt_client(student).get(f"{API}me/inbox/")

    assert response.status_code == 200
    assert {"private", "no-store"} <= directives(response)


@pytest.mark.django_db
def test_it_keeps_api_answers_out_of_every_cache_with_an_api_key(admin_user):
    client = key_client(admin_user, ["read_deliveries"])

    answered = client.get(f"{API}notifications/")
    client.credentials(HTTP_AUTHORIZATION="Api-Key fn_not.a-key")
    refused = client.get(f"{API}notifications/")

    assert answered.status_code == 200 and refused.status_code == 401
    assert {"private", "no-store"} <= directives(answered)
    assert {"private", "no-store"} <= directives(refused)


@pytest.mark.django_db
def test_it_makes_a_views_own_cache_control_stricter_for_a_signed_in_user(client, student):
    anonymous = client.get("/sw.js")
    client.force_login(student)
    signed_in = client.get("/sw.js")

    assert directives(anonymous) == {"max-age=0", "no-cache"}
    assert directives(signed_in) == {"max-age=0", "no-cache", "private", "no-store"}


@pytest.mark.django_db
def test_it_leaves_public_files_and_the_health_check_alone(client, student):
    client.force_login(student)

    stylesheet = client.get("/static/css/site.css")
    health = client.get(f"{API}health/")

    assert stylesheet.status_code == 200 and "no-store" not in directives(stylesheet)
    assert health.status_code == 200 and "no-store" not in directives(health)
