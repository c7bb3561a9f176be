"""What the probes call: readiness (can this instance do its work?) and the Prometheus exposition."""

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from ..engine.metrics import metrics_exposition
from ..engine.queue import broker_reachable, worker_heartbeat_age

__all__ = ["metrics_exposition", "readiness_report"]

logger = logging.getLogger(__name__)


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def _cache():
    key, value = "readiness:probe", uuid.uuid4().hex
    cache.set(key, value, timeout=30)
    return cache.get(key) == value


def _worker():
    age = worker_heartbeat_age()
    return age is not None and age <= settings.READINESS_WORKER_MAX_AGE_SECONDS


CHECKS = {"database": _database, "cache": _cache, "broker": broker_reachable, "worker": _worker}


def readiness_report():
    """{check name: True/False} for the database, the cache, the broker and a recent worker heartbeat.

    A check that raises fails; why is logged (at WARNING), never returned: the probe is public.
    """
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = bool(check())
        except Exception as exc:
            logger.warning("readiness: the %s check failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = False
        else:
            if not results[name]:
                logger.warning("readiness: the %s check failed", name)
    return results
