"""Shared helpers for the API tests: clients per authentication method, a private cache namespace."""

import copy
import uuid

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import ApiKey, Cohort, Role
from accounts.services import api_key_create

from .conftest import make_user

API = "/api/v1/"


@pytest.fixture(autouse=True)
def private_cache(settings):
    """Throttle, lockout and breaker state in a namespace of this test's own (the cache is shared)."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"{caches['default'].get('KEY_PREFIX', '')}-{uuid.uuid4().hex[:12]}"
    settings.CACHES = caches


def jwt_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def key_client(user, scopes, cohorts=(), **fields):
    key, raw = api_key_create(user=user, name="integration", scopes=scopes, cohorts=cohorts, **fields)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    client.api_key = key
    return client


def session_client(user, *, enforce_csrf=True):
    client = APIClient(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


@pytest.fixture
def api_user(db):
    return make_user("i4000001", role=Role.API_USER, email="sis@example.edu")


@pytest.fixture
def members(cohort):
    users = [make_user(f"s10001{n:02d}") for n in range(3)]
    cohort.members.add(*users)
    return users


@pytest.fixture
def other_cohort(db):
    other = Cohort.objects.create(code="math200-2026", name="Mathematics 200")
    other.members.add(make_user("s2000100"))
    return other


def send_body(**overrides):
    body = {"notifier": "academic", "title": "Room change", "body": "The lecture moves to B12.",
            "category": "timetable", "channels": ["email", "inbox"], "audience": {"cohorts": ["cs101-2026"]}}
    body.update(overrides)
    return body


__all__ = ["API", "ApiKey", "private_cache", "jwt_client", "key_client", "session_client", "api_user", "members",
           "other_cohort", "send_body"]
