"""Readiness (/api/v1/health/ready/): database, cache, broker and a recent worker heartbeat; liveness stays trivial."""

import pytest
from rest_framework.test import APIClient

from .conftest import BROKERS
from .peers import wait_until

READY = "/api/v1/health/ready/"


def ready():
    return APIClient().get(READY)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_is_ready_with_a_worker_and_unready_once_the_worker_is_gone(broker, workers, settings):
    settings.READINESS_WORKER_MAX_AGE_SECONDS = 2
    worker = workers(Q_WORKERS=1)

    response = wait_until(lambda: (r := ready()).status_code == 200 and r, timeout=60, message="ready")
    assert response.json() == {"status": "ready",
                               "checks": {"database": "ok", "cache": "ok", "broker": "ok", "worker": "ok"}}
    assert response["Cache-Control"] == "no-store"

    worker.stop()
    # Unready once the last heartbeat is older than READINESS_WORKER_MAX_AGE_SECONDS: waited for, not slept.
    response = wait_until(lambda: (r := ready()).status_code == 503 and r, timeout=30, message="unready")
    assert response.json()["failed"] == ["worker"]


@pytest.mark.django_db
def test_it_is_unready_without_a_worker_and_says_which_check_failed():
    response = ready()

    assert response.status_code == 503
    assert response.json() == {"status": "unready", "failed": ["worker"],
                               "checks": {"database": "ok", "cache": "ok", "broker": "ok", "worker": "fail"}}


@pytest.mark.django_db
def test_it_names_a_broken_cache_and_reveals_nothing_else(settings, caplog):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}

    response = ready()

    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["cache"] == "fail" and body["checks"]["database"] == "ok"
    assert "cache" in body["failed"]
    assert "127.0.0.1" not in response.content.decode()  # why is logged, not answered
    assert any("the cache check failed" in record.getMessage() for record in caplog.records)
    assert APIClient().get("/api/v1/health/").json() == {"status": "ok"}  # liveness does not look


@pytest.mark.django_db
def test_it_needs_no_credentials_and_is_not_throttled(settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "anon": "2/min"}

    statuses = {ready().status_code for _ in range(5)}

    assert statuses == {503}
