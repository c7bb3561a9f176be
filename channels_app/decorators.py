"""Class decorators for the cross-cutting concerns of the send sequence.

Each wraps one well-defined step and holds no business rule:

- `validate_config(Config)` on a channel mixin wraps its send step: while the channel's
  configuration has problems, every message fails permanently with the reason;
- `rate_limit(provider)` on a channel mixin wraps its send step (outside the breaker): sends no
  more than the provider's rate (`<PROVIDER>_RATE_LIMIT`, shared by all workers) and defers the rest,
  not counted as attempts, to when their turn should come;
- `circuit_breaker(provider)` on a channel mixin wraps its send step: refused while the
  provider's breaker (shared by all workers) is open, and counts the provider's failures;
- `track_performance` on a notifier wraps each of its channels' steps: times the batch
  (each wrapper passes the step's outcomes through as they are yielded)
  and buffers a metric, written in one insert by `flush_metrics()` once per task; each
  message's latency and deferral also go to the Prometheus metrics (channels_app/metrics.py).
"""

import functools
import logging
import time

from django.core.exceptions import ImproperlyConfigured

from .breaker import CircuitBreaker
from .metrics import observe_outcome
from .models import PerformanceMetric
from .outcomes import Outcome
from .ratelimit import RATE_LIMIT_SETTINGS, RateLimiter, configured_rate

logger = logging.getLogger(__name__)

_metrics_buffer = []


def _wrap_step(cls, make_wrapper):
    """Replace a channel mixin's send step (the one ChannelMeta found) by its wrapped version."""
    name = cls.step_name
    setattr(cls, name, functools.wraps(cls.__dict__[name])(make_wrapper(cls.__dict__[name])))
    return cls


def track_performance(cls):
    """Time each channel step of a notifier; buffered, then written in one insert by `flush_metrics()`."""

    providers = {klass.channel: getattr(klass, "breaker_provider", klass.channel)
                 for klass in cls.__mro__ if "channel" in klass.__dict__}

    def timed(step, channel):
        provider = providers.get(channel, channel)

        @functools.wraps(step)
        def wrapper(self, messages, *args, **kwargs):
            started = last = time.perf_counter()
            outcomes, error = [], ""
            try:
                for outcome in step(self, messages, *args, **kwargs):
                    # From the previous outcome to this one: the step's own time (the caller's
                    # recording happens while this generator is suspended at the yield).
                    observe_outcome(channel, provider, outcome, time.perf_counter() - last)
                    outcomes.append(outcome)
                    yield outcome
                    last = time.perf_counter()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                raise
            finally:  # also when the batch is stopped early: what was sent is measured
                succeeded = sum(1 for outcome in outcomes if outcome.ok)
                _metrics_buffer.append({
                    "notifier": self.key, "channel": channel, "operation": "send", "items": len(outcomes),
                    "succeeded": succeeded, "failed": len(outcomes) - succeeded,
                    "duration_ms": (time.perf_counter() - started) * 1000,
                    "ok": not error and succeeded == len(outcomes), "error": error,
                })

        return wrapper

    cls.steps = {channel: timed(step, channel) for channel, step in cls.steps.items()}
    return cls


def record_metric(notifier_key, channel, *, items, seconds):
    """Buffer the metric of a channel's messages written without its step (an inbox written as a set)."""
    _metrics_buffer.append({"notifier": notifier_key, "channel": channel, "operation": "send", "items": items,
                            "succeeded": items, "failed": 0, "duration_ms": seconds * 1000, "ok": True, "error": ""})


def flush_metrics():
    """Write the buffered metrics in one query. Called once per task by the engine."""
    if _metrics_buffer:
        rows = [PerformanceMetric(**row) for row in _metrics_buffer]
        _metrics_buffer.clear()
        PerformanceMetric.objects.bulk_create(rows)


def circuit_breaker(provider):
    """Refuse a channel's sends while its provider's breaker is open; count provider failures.

    A batch in which nothing was sent and the provider itself failed counts as one failure;
    any other batch shows the provider is up and closes it.
    """

    def guarded(step):
        def wrapper(self, messages, *args, **kwargs):
            if not messages:
                return
            now = getattr(self, "now", None)
            breaker = CircuitBreaker(
                provider, clock=now.timestamp if now else time.time,
                log_extra={"notification_id": messages[0].notification.pk, "delivery_id": messages[0].delivery_id,
                           "channel": messages[0].channel},
            )
            allowed, wait = breaker.allow()
            if not allowed:
                for m in messages:
                    yield Outcome.transient_failure(m, f"circuit breaker open for {provider}", retry_after=wait,
                                                    attempted=False)
                return
            outcomes = []
            try:
                for outcome in step(self, messages, *args, **kwargs):
                    outcomes.append(outcome)
                    yield outcome
            finally:  # a batch stopped early still tells whether the provider answered
                if any(outcome.ok for outcome in outcomes) or (
                        outcomes and not any(o.provider_failure for o in outcomes)):
                    breaker.record_success()  # the provider answered (even a refusal shows it is up)
                elif outcomes:
                    breaker.record_failure()

        return wrapper

    def decorate(cls):
        cls.breaker_provider = provider
        return _wrap_step(cls, guarded)

    return decorate


def rate_limit(provider):
    """Send no more than the provider's rate, counted across every worker; defer the rest.

    The rate is read at each batch from the setting RATE_LIMIT_SETTINGS names (messages per second;
    0 or unset: no limit). The batch asks the shared limiter for all its messages at once (one round
    trip): those granted go to the step; the others are deferred first, each to the time its turn
    should come, with the reason, and the wait is not an attempt (`attempted=False`). It wraps the
    circuit breaker, so a deferred message never counts as the provider's answer.
    """
    setting = RATE_LIMIT_SETTINGS[provider]

    def limited(step):
        def wrapper(self, messages, *args, **kwargs):
            if not messages:
                return
            try:
                rate = configured_rate(setting)
            except ImproperlyConfigured as exc:  # also a system check (flashnotify.E030): workers refuse to start
                for m in messages:
                    yield Outcome.transient_failure(m, str(exc), retry_after=60, attempted=False)
                return
            if not rate:
                yield from step(self, messages, *args, **kwargs)
                return
            try:
                # A notifier's clock (a chosen `now` in tests); a bare mixin (a phone code) reads the real time.
                limiter = RateLimiter(provider, rate, clock=getattr(self, "clock", time.time))
                granted, waits = limiter.reserve(len(messages))
            except Exception as exc:  # the shared cache does not answer: wait rather than pass the provider's rate
                logger.warning("%s rate limit: cannot reach the shared cache: %s", provider, exc,
                               extra={"notification_id": messages[0].notification.pk, "provider": provider})
                for m in messages:
                    yield Outcome.transient_failure(m, f"the {provider} rate limit cannot be read: {exc}"[:300],
                                                    retry_after=10, attempted=False)
                return
            if waits:
                logger.info("%s rate limit (%g/s): %d of %d messages deferred", provider, rate, len(waits),
                            len(messages), extra={"notification_id": messages[0].notification.pk,
                                                  "channel": messages[0].channel, "provider": provider})
            # Deferred first: recorded at once, so their due times are not pushed back by the sending.
            for m, wait in zip(messages[granted:], waits):
                outcome = Outcome.transient_failure(
                    m, f"waiting for the {provider} provider's rate limit ({rate:g} per second)",
                    retry_after=wait, attempted=False)
                outcome.extra["wait"] = "rate_limit"
                yield outcome
            if granted:
                yield from step(self, messages[:granted], *args, **kwargs)

        return wrapper

    def decorate(cls):
        return _wrap_step(cls, limited)

    return decorate


def validate_config(config):
    """Fail a channel's sends permanently, with the reason, while its configuration is incomplete."""

    def checked(step):
        def wrapper(self, messages, *args, **kwargs):
            problems = config.problems()
            if problems:
                reason = f"{config.channel} is not configured: {'; '.join(problems)}"
                for m in messages:
                    yield Outcome.permanent_failure(m, reason)
                return
            yield from step(self, messages, *args, **kwargs)

        return wrapper

    def decorate(cls):
        cls.config = config
        return _wrap_step(cls, checked)

    return decorate
