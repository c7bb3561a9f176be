"""Prometheus metrics of the engine, and the exposition that /metrics serves.

Two kinds:
- counted as it happens, in whichever process it happens (a gunicorn worker, a qcluster
  worker): fan-out lag here, provider latency and waits in channels_app/metrics.py. With
  PROMETHEUS_MULTIPROC_DIR set, every process writes its own file and the scrape adds them up;
- read at scrape time (`StateCollector`): deliveries by channel and status (one GROUP BY, exact
  whichever process sent them), queue depth from the broker, each provider's circuit breaker
  from the shared cache, and the workers' heartbeat age.
"""

import logging

from django.conf import settings
from django.db.models import Count, Max, Min
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from channels_app.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from channels_app.constants import Channel
from channels_app.registry import ChannelMeta

from ..models import Delivery
from .queue import queue_depth, worker_clusters, worker_heartbeat_age

logger = logging.getLogger(__name__)

LAG_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, float("inf"))
FANOUT_FIRST_HANDOFF = Histogram(
    "flashnotify_fanout_first_handoff_seconds",
    "From a notification's acceptance (or its scheduled time) to its first message accepted by a provider; "
    "observed once, when the notification finishes.",
    buckets=LAG_BUCKETS,
)
FANOUT_LAST_HANDOFF = Histogram(
    "flashnotify_fanout_last_handoff_seconds",
    "From a notification's acceptance (or its scheduled time) to its last message accepted by a provider "
    "(retries included); observed once, when the notification finishes.",
    buckets=LAG_BUCKETS,
)


def observe_fanout_lag(notification):
    """Observe the finished notification's first and last hand-off, in one aggregate query."""
    row = Delivery.objects.filter(notification_id=notification.pk, sent_at__isnull=False).aggregate(
        first=Min("sent_at"), last=Max("sent_at"), created=Max("notification__created_at"),
        scheduled=Max("notification__scheduled_for"))
    if row["first"] is None:
        return  # nothing was handed to a provider
    accepted = max(filter(None, (row["created"], row["scheduled"])))
    FANOUT_FIRST_HANDOFF.observe(max((row["first"] - accepted).total_seconds(), 0.0))
    FANOUT_LAST_HANDOFF.observe(max((row["last"] - accepted).total_seconds(), 0.0))


def breaker_providers():
    return sorted({mixin.breaker_provider for mixin in ChannelMeta.channels.values()
                   if getattr(mixin, "breaker_provider", None)})


class StateCollector:
    """Gauges read from the database, the broker and the cache at each scrape.

    A source that does not answer is skipped (and `flashnotify_state_source_up` says so) so the
    rest of the scrape still arrives.
    """

    def collect(self):
        up = GaugeMetricFamily("flashnotify_state_source_up",
                               "1 if the scrape could read this source, 0 if it failed.", labels=["source"])
        for source, read in (("database", self._deliveries), ("broker", self._queue),
                             ("cache", self._breakers), ("workers", self._workers)):
            try:
                families = list(read())
            except Exception:
                logger.exception("metrics: cannot read the %s", source)
                up.add_metric([source], 0)
            else:
                up.add_metric([source], 1)
                yield from families
        yield up

    def _deliveries(self):
        family = GaugeMetricFamily("flashnotify_deliveries",
                                   "Deliveries in the database now, by channel and status.",
                                   labels=["channel", "status"])
        counts = {(row["channel"], row["status"]): row["n"]
                  for row in Delivery.objects.values("channel", "status").annotate(n=Count("id")).order_by()}
        for channel in Channel.values:
            for status in Delivery.Status.values:
                family.add_metric([channel, status], counts.get((channel, status), 0))
        yield family

    def _queue(self):
        yield GaugeMetricFamily("flashnotify_queue_depth", "Tasks waiting in the broker, due now.",
                                value=queue_depth())

    def _breakers(self):
        state = GaugeMetricFamily("flashnotify_circuit_breaker_state",
                                  "1 for the provider's current circuit breaker state, 0 for the others.",
                                  labels=["provider", "state"])
        failures = GaugeMetricFamily("flashnotify_circuit_breaker_failures",
                                     "Failed batches in a row counted by the provider's circuit breaker.",
                                     labels=["provider"])
        for provider in breaker_providers():
            snapshot = CircuitBreaker(provider).snapshot()
            for name in (CLOSED, HALF_OPEN, OPEN):
                state.add_metric([provider, name], 1 if snapshot["state"] == name else 0)
            failures.add_metric([provider], snapshot["failures"])
        yield state
        yield failures

    def _workers(self):
        yield GaugeMetricFamily("flashnotify_worker_clusters", "qclusters reporting their status now.",
                                value=worker_clusters())
        age = worker_heartbeat_age()
        if age is not None:  # no series before any cluster was ever seen
            yield GaugeMetricFamily("flashnotify_worker_heartbeat_age_seconds",
                                    "Seconds since a qcluster last reported its status.", value=age)


class _ThisProcess:
    """The default registry's collectors (this process's metrics) in single-process mode."""

    def collect(self):
        return REGISTRY.collect()


def metrics_exposition():
    """(body, content type) of a scrape: every process's counters and histograms, and the state gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory is not None:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(StateCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
