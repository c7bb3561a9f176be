"""The engine's queue hands tasks to the broker over one connection per process, which survives a Redis restart."""

import shutil
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf

from notifications.engine.queue import enqueue_deliveries, enqueue_deliveries_at, shared_broker

from .peers import RedisPeer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.fixture
def redis_peer(monkeypatch, settings):
    peer = RedisPeer().start()
    settings.FANOUT_CHUNK_SIZE = 2
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", peer.url)
    monkeypatch.setattr(Conf, "BROKER_CLASS", "notifications.engine.queue.DelayingRedis")
    yield peer
    peer.stop()


def test_it_enqueues_many_tasks_over_one_connection(redis_peer):
    before = redis_peer.client().info("stats")["total_connections_received"]

    enqueue_deliveries(list(range(100)))  # 50 tasks of 2

    client = redis_peer.client()
    assert client.llen(shared_broker().list_key) == 50
    # This process opened one connection for the 50 tasks (the counting client is the other one).
    assert client.info("stats")["total_connections_received"] - before == 2


def test_it_reconnects_to_the_broker_after_a_redis_restart(redis_peer):
    enqueue_deliveries([1, 2])
    assert redis_peer.client().llen(shared_broker().list_key) == 1

    redis_peer.restart()  # an empty Redis on the same port: the pooled connection is dead
    enqueue_deliveries([3, 4, 5])
    enqueue_deliveries_at([6], timezone.now() + timedelta(minutes=5))

    client = redis_peer.client()
    assert client.llen(shared_broker().list_key) == 2
    assert client.zcard(shared_broker().delayed_key) == 1


def test_each_broker_configuration_has_its_own_shared_broker(redis_peer, monkeypatch, db):
    on_redis = shared_broker()
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr(Conf, "BROKER_CLASS", None)

    enqueue_deliveries([1])

    assert shared_broker() is not on_redis
    assert shared_broker().queue_size() == 1
    assert redis_peer.client().llen(on_redis.list_key) == 0
