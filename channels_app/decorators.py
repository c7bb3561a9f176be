"""Class decorators for cross-cutting concerns of notifiers and channel mixins.

They wrap a channel's step, `send_<channel>(self, messages) -> list[Outcome]`, and hold
no business rule: timing, circuit breaking and configuration validation only.
"""

import functools
import time

from .base import Outcome
from .breaker import CircuitBreaker

_metrics_buffer = []


def _send_method_names(cls):
    return [f"send_{klass.__dict__['channel']}" for klass in cls.__mro__ if "channel" in klass.__dict__]


def track_performance(cls):
    """Time render and each channel step; buffered, then written in one insert by `flush_metrics()`."""

    def timed(method, channel, operation):
        @functools.wraps(method)
        def wrapper(self, messages, *args, **kwargs):
            started = time.perf_counter()
            outcomes, error = [], ""
            try:
                outcomes = method(self, messages, *args, **kwargs)
                return outcomes
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                raise
            finally:
                succeeded = sum(1 for outcome in outcomes if outcome.ok)
                _metrics_buffer.append({
                    "notifier": self.key, "channel": channel, "operation": operation, "items": len(messages),
                    "succeeded": succeeded, "failed": len(outcomes) - succeeded,
                    "duration_ms": (time.perf_counter() - started) * 1000, "ok": not error and succeeded == len(outcomes),
                    "error": error,
                })

        return wrapper

    for name in _send_method_names(cls):
        setattr(cls, name, timed(getattr(cls, name), name.removeprefix("send_"), "send"))
    return cls


def flush_metrics():
    """Write the buffered metrics in one query. Called once per task by the engine."""
    from .models import PerformanceMetric

    if _metrics_buffer:
        rows = [PerformanceMetric(**row) for row in _metrics_buffer]
        _metrics_buffer.clear()
        PerformanceMetric.objects.bulk_create(rows)


def circuit_breaker(provider):
    """Refuse a channel's sends while its provider's breaker is open; count provider failures.

    A batch in which nothing was sent and the provider itself failed counts as one failure;
    any other batch shows the provider is up and closes it.
    """

    def decorate(cls):
        name = f"send_{cls.__dict__['channel']}"
        method = cls.__dict__[name]

        @functools.wraps(method)
        def wrapper(self, messages, *args, **kwargs):
            if not messages:
                return []
            now = getattr(self, "now", None)
            breaker = CircuitBreaker(
                provider, clock=now.timestamp if now else time.time,
                log_extra={"notification_id": messages[0].notification.pk, "delivery_id": messages[0].delivery_id,
                           "channel": messages[0].channel},
            )
            allowed, wait = breaker.allow()
            if not allowed:
                return [Outcome.transient_failure(m, f"circuit breaker open for {provider}", retry_after=wait,
                                                  attempted=False) for m in messages]
            outcomes = method(self, messages, *args, **kwargs)
            if any(outcome.ok for outcome in outcomes) or not any(o.provider_failure for o in outcomes):
                breaker.record_success()  # the provider answered (even a refusal shows it is up)
            else:
                breaker.record_failure()
            return outcomes

        setattr(cls, name, wrapper)
        cls.breaker_provider = provider
        return cls

    return decorate


def validate_config(config):
    """Fail a channel's sends permanently, with the reason, while its configuration is incomplete."""

    def decorate(cls):
        name = f"send_{cls.__dict__['channel']}"
        method = cls.__dict__[name]

        @functools.wraps(method)
        def wrapper(self, messages, *args, **kwargs):
            problems = config.problems()
            if problems:
                reason = f"{cls.__dict__['channel']} is not configured: {'; '.join(problems)}"
                return [Outcome.permanent_failure(m, reason) for m in messages]
            return method(self, messages, *args, **kwargs)

        setattr(cls, name, wrapper)
        cls.config = config
        return cls

    return decorate
