"""Prometheus metrics observed where messages are handed to providers (by `track_performance`).

Counters and histograms of prometheus_client: with PROMETHEUS_MULTIPROC_DIR set, each process
(gunicorn worker, qcluster worker) writes its own file there and /metrics adds them up.
"""

from prometheus_client import Counter, Histogram

PROVIDER_SEND_SECONDS = Histogram(
    "flashnotify_provider_send_seconds",
    "Time a channel step spent on one message until the provider's answer (connection set-up counts "
    "toward a batch's first message).",
    ["channel", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROVIDER_WAITS = Counter(
    "flashnotify_provider_waits",
    "Messages deferred instead of sent: refused while the provider's circuit breaker is open "
    "(reason=breaker_open), over the provider's configured rate (reason=rate_limit), or answered 429 with "
    "Retry-After by the provider (reason=retry_after).",
    ["channel", "provider", "reason"],
)
PROVIDER_WAIT_SECONDS = Counter(
    "flashnotify_provider_wait_seconds",
    "Seconds the deferred messages were told to wait before the next try (breaker reopening, rate limit, "
    "Retry-After).",
    ["channel", "provider", "reason"],
)


def observe_outcome(channel, provider, outcome, seconds):
    """Count one outcome of a channel step: its latency when the provider was asked, its wait when deferred."""
    if outcome.attempted:
        PROVIDER_SEND_SECONDS.labels(channel, provider).observe(seconds)
    if outcome.retry_after and not outcome.ok:
        reason = outcome.extra.get("wait") or ("retry_after" if outcome.attempted else "breaker_open")
        PROVIDER_WAITS.labels(channel, provider, reason).inc()
        PROVIDER_WAIT_SECONDS.labels(channel, provider, reason).inc(float(outcome.retry_after))
