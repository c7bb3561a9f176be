"""The OpenAPI schema is complete and valid, the docs are served without a CDN, and the live app
answers schemathesis' generated requests (as an admin and as a student) without a 5xx and as documented."""

import os

import pytest
import schemathesis
import yaml
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifications.models import InboxMessage
from flashnotify.wsgi import application
from notifications.services import notification_send

from .api_support import *  # noqa: F403
from .api_support import API
from .conftest import make_user


def test_it_generates_a_valid_schema_with_every_operation_and_its_errors(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert set(schema["components"]["securitySchemes"]) >= {"jwtAuth", "apiKeyAuth", "cookieAuth"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if not path.startswith("/api/v1/webhooks/"):
                assert {"400", "401", "403", "404", "429"} <= set(operation["responses"]), (method, path)
                assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}
    assert "/api/v1/webhooks/twilio/status/" in schema["paths"]
    assert schema["paths"]["/api/v1/webhooks/twilio/status/"]["post"]["security"] == []
    assert "security" not in schema["paths"]["/api/v1/health/"]["get"] and "security" not in schema  # public


def test_it_serves_the_docs_from_its_own_static_files(db):
    page = APIClient().get(f"{API}docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html and "cdn." not in html and "/static/drf_spectacular_sidecar/" in html
    assert APIClient().get(f"{API}schema/", HTTP_ACCEPT="application/json").json()["openapi"].startswith("3.")


EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))  # per operation and role


def live_schema():
    """The schema the app serves at /api/v1/schema/, made by the same generator, bound to the WSGI app."""
    from drf_spectacular.generators import SchemaGenerator

    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = application
    loaded.config.generation.update(max_examples=EXAMPLES)
    # Readiness answers 503 (documented) without a worker, which the server-error check refuses;
    # tests/test_readiness.py calls it with and without one.
    return loaded.exclude(path_regex="/webhooks/|/health/ready/")


schema = live_schema()


@pytest.fixture
def world(db, settings, admin_user, student, cohort):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "user": "100000/min", "anon": "100000/min",
                                   "login": "100000/min"}
    cohort.members.add(student, make_user("s1000002"))
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="grade", title="Grades",
                                        body="Out now.", audience={"cohorts": [cohort.code]}, channels=["inbox"])
    InboxMessage.objects.create(notification=notification, recipient=student, title="Grades", body="Out now.",
                                category="grade")
    # As Django's test client does: requests through the raw WSGI app must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def bearer(user):
    from rest_framework_simplejwt.tokens import RefreshToken

    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_it_answers_generated_requests_as_documented(case, world, admin_user, student):
    for user in (admin_user, student):
        case.call_and_validate(headers=bearer(user), checks=[
            not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])
