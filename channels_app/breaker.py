"""A circuit breaker per channel provider, its state in the shared cache so every worker sees it.

closed: sends go through; `threshold` failed batches in a row open it.
open: sends are refused (deferred, not counted as attempts) until `reset_seconds` have passed.
half-open: one worker, whichever takes the trial first, sends one batch; its success closes
the breaker, its failure opens it again. The others keep being refused meanwhile.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, provider, *, threshold=None, reset_seconds=None, clock=time.time, log_extra=None):
        self.provider = provider
        self.threshold = threshold or settings.BREAKER_FAILURE_THRESHOLD
        self.reset_seconds = reset_seconds or settings.BREAKER_RESET_SECONDS
        self.clock = clock
        self.log_extra = log_extra or {}
        self.key = f"breaker:{provider}"
        self.trial_key = f"breaker:{provider}:trial"

    def _load(self):
        return cache.get(self.key) or {"state": CLOSED, "failures": 0, "opened_at": None}

    def _save(self, record):
        cache.set(self.key, record, timeout=None)

    def _move(self, record, state):
        if record["state"] != state:
            logger.warning("circuit breaker %s: %s -> %s", self.provider, record["state"], state,
                           extra={**self.log_extra, "provider": self.provider, "breaker_state": state,
                                  "breaker_from": record["state"], "failures": record["failures"]})
        record["state"] = state

    @property
    def state(self):
        record = self._load()
        if record["state"] == OPEN and self.clock() - record["opened_at"] >= self.reset_seconds:
            return HALF_OPEN
        return record["state"]

    def snapshot(self):
        record = self._load()
        return {"provider": self.provider, "state": self.state, "failures": record["failures"],
                "opened_at": record["opened_at"]}

    def allow(self):
        """Return (allowed, seconds until the next trial)."""
        record = self._load()
        if record["state"] == CLOSED:
            return True, 0
        waited = self.clock() - (record["opened_at"] or 0)
        if waited < self.reset_seconds:
            return False, self.reset_seconds - waited
        # Half-open: exactly one trial at a time across all workers (cache.add is atomic).
        if not cache.add(self.trial_key, 1, timeout=max(int(self.reset_seconds), 1)):
            return False, self.reset_seconds
        self._move(record, HALF_OPEN)
        self._save(record)
        return True, 0

    def record_success(self):
        record = self._load()
        if record["state"] != CLOSED or record["failures"]:
            self._move(record, CLOSED)
            record.update(failures=0, opened_at=None)
            self._save(record)
            cache.delete(self.trial_key)

    def record_failure(self):
        record = self._load()
        record["failures"] += 1
        if record["state"] != CLOSED or record["failures"] >= self.threshold:
            self._move(record, OPEN)
            record["opened_at"] = self.clock()
            cache.delete(self.trial_key)
        self._save(record)

    def reset(self):
        record = self._load()
        self._move(record, CLOSED)
        self._save({"state": CLOSED, "failures": 0, "opened_at": None})
        cache.delete(self.trial_key)
