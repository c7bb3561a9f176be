"""Reads on the sending layer: recent error rates and send latencies per channel, and each channel's state."""

from datetime import timedelta

from django.utils import timezone

from .breaker import CircuitBreaker
from .constants import Channel
from .models import PerformanceMetric
from .registry import ChannelMeta


def _percentile(values, percent):
    if not values:
        return None
    values = sorted(values)
    index = max(0, min(len(values) - 1, -(-len(values) * percent // 100) - 1))
    return values[index]


def channel_health(channel, *, now=None, hours=24, buckets=24, limit=50_000):
    """Send metrics of `channel` over the last `hours`, in `buckets` equal slices.

    Latency is per message (a batch's duration / its items). Returns
    {"buckets": [{"start", "items", "failed", "error_rate", "p50", "p95"}], "totals": {...}}.
    """
    now = now or timezone.now()
    start = now - timedelta(hours=hours)
    width = timedelta(hours=hours) / buckets
    slots = [{"start": start + width * i, "items": 0, "failed": 0, "latencies": []} for i in range(buckets)]
    rows = (PerformanceMetric.objects.filter(channel=channel, operation="send", recorded_at__gte=start,
                                             recorded_at__lte=now)
            .order_by("-recorded_at").values_list("recorded_at", "items", "failed", "duration_ms")[:limit])
    all_latencies, items, failed = [], 0, 0
    for recorded_at, n, bad, duration in rows:
        slot = slots[min(buckets - 1, int((recorded_at - start) / width))]
        slot["items"] += n
        slot["failed"] += bad
        latency = duration / max(n, 1)
        slot["latencies"].append(latency)
        all_latencies.append(latency)
        items += n
        failed += bad
    for slot in slots:
        slot["error_rate"] = slot["failed"] / slot["items"] if slot["items"] else None
        slot["p50"] = _percentile(slot["latencies"], 50)
        slot["p95"] = _percentile(slot["latencies"], 95)
        del slot["latencies"]
    return {
        "buckets": slots,
        "totals": {"items": items, "failed": failed, "error_rate": failed / items if items else None,
                   "p50": _percentile(all_latencies, 50), "p95": _percentile(all_latencies, 95),
                   "p99": _percentile(all_latencies, 99)},
    }


def channel_status(channel, *, hours=1):
    """A channel at a glance: configured or not (and which settings are missing), its provider's
    circuit breaker, and its send totals over the last `hours`.

    The configuration is the one `validate_config` checks before every send, so a channel the
    console calls configured is one whose sends are not refused for it.
    Returns {"channel", "label", "configured", "missing", "provider", "breaker" (snapshot or None), "totals"}.
    """
    mixin = ChannelMeta.channels.get(channel)
    config = getattr(mixin, "config", None)
    missing = config.missing_settings() if config else []
    provider = getattr(mixin, "breaker_provider", None)
    return {"channel": channel, "label": Channel(channel).label, "configured": not missing, "missing": missing,
            "provider": provider, "breaker": CircuitBreaker(provider).snapshot() if provider else None,
            "totals": channel_health(channel, hours=hours, buckets=1)["totals"]}


def channels_status(*, hours=1):
    """`channel_status` of every channel, in the order of Channel."""
    return [channel_status(channel, hours=hours) for channel in Channel.values]
