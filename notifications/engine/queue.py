"""The workers' queue: the one module that talks to django-q2.

Everything else hands work to the workers through these functions, so the broker (ORM or
Redis) and the task paths are known in one place. Tasks are the thin functions of
`notifications.tasks`; the sweep and the retention purge are django-q2 Schedules kept by `ensure_sweep_schedule`
and `ensure_retention_schedule`, the roster sync (when configured) one kept by `ensure_roster_schedule`. The workers themselves run as a `Cluster` of this module (`manage.py qcluster`).
"""

import os
import signal
import threading
import time
import uuid
from datetime import timedelta
from multiprocessing import Value

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django_q import cluster as q_cluster
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf, setproctitle
from django_q.worker import worker as q_worker
from django_q.models import Schedule
from django_q.status import Stat
from django_q.tasks import async_task
from redis.exceptions import ConnectionError as RedisConnectionError

SWEEP_SCHEDULE = "flashnotify-sweep"
LAST_HEARTBEAT_KEY = "workers:last-heartbeat"
RETENTION_SCHEDULE = "flashnotify-retention"
ROSTER_SCHEDULE = "flashnotify-roster-sync"


_brokers = threading.local()


def shared_broker():
    """This process's broker, made once and reused by every enqueue (django-q2 makes one per `async_task`,
    which on Redis is a new connection pool, so a TCP connection and its handshake per task).

    Kept per thread and per configuration (a forked worker or a test that switches brokers gets its own);
    redis-py reconnects a pooled connection that the server dropped (a Redis restart) when it is next used.
    """
    key = (os.getpid(), Conf.BROKER_CLASS, Conf.ORM, Conf.REDIS, Conf.CLUSTER_NAME)
    if getattr(_brokers, "key", None) != key:
        _brokers.broker, _brokers.key = get_broker(), key
    return _brokers.broker


def _broker_for(when):
    if when is None:
        return shared_broker()
    if Conf.ORM:
        return _ORMAt(when)
    broker = shared_broker()
    if isinstance(broker, DelayingRedis):
        return _DelayedOn(broker, when)
    return DelayingRedis(list_key=Conf.CLUSTER_NAME, when=when)


def _enqueue(func, *args, when=None, **kwargs):
    """`async_task` through the shared broker (at `when`, if given); a broken connection is dropped and the
    enqueue tried once more on a new one."""
    try:
        return async_task(func, *args, broker=_broker_for(when), **kwargs)
    except (RedisConnectionError, OSError):
        _brokers.key = None
        return async_task(func, *args, broker=_broker_for(when), **kwargs)


def enqueue_fan_out(notification_id):
    _enqueue("notifications.tasks.fan_out", notification_id, task_name=f"fan-out-{notification_id}"[:100])


def enqueue_fanout_pages(page_ids):
    for page_id in page_ids:
        _enqueue("notifications.tasks.plan_page", page_id)


def enqueue_deliveries(delivery_ids):
    """Hand delivery ids to the workers, one task per chunk."""
    size = settings.FANOUT_CHUNK_SIZE
    for start in range(0, len(delivery_ids), size):
        _enqueue("notifications.tasks.send_deliveries", delivery_ids[start:start + size])


class _ORMAt(ORM):
    """The ORM broker, writing a task that no worker takes before `when`.

    Its queue is a table whose `lock` column says when a task may be taken (`lock < now`),
    so a lock in the future is a delayed task, taken within a poll of its time.
    """

    def __init__(self, when):
        super().__init__(list_key=Conf.CLUSTER_NAME)
        self.when = when

    def enqueue(self, task):
        return self.get_connection().create(key=self.list_key, payload=task, lock=self.when).pk


class DelayingRedis(Redis):
    """django-q2's Redis broker with delayed tasks (the cluster's `broker_class` on Redis).

    Redis's list has no "not before": a delayed task waits in a sorted set beside the list,
    scored by its due time, and every dequeue first moves the due ones onto the list in one
    atomic script. The cluster's pusher dequeues at least once a second (a blocking pop of
    one second), so a delayed task is taken within a second or so of its time. Like the list,
    the set lives only in Redis: the sweep enqueues anything still due after
    DELIVERY_STALE_SECONDS if Redis lost it.
    """

    PROMOTE = """
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
    for _, task in ipairs(due) do
        redis.call('ZREM', KEYS[1], task)
        redis.call('RPUSH', KEYS[2], task)
    end
    return #due
    """

    def __init__(self, list_key=None, when=None):
        super().__init__(list_key=list_key)
        self.delayed_key = f"{self.list_key}:delayed"
        self.when = when

    def enqueue(self, task):
        if self.when is None:
            return super().enqueue(task)
        return self.connection.zadd(self.delayed_key, {task: self.when.timestamp()})

    def dequeue(self):
        self.connection.eval(self.PROMOTE, 2, self.delayed_key, self.list_key, time.time())
        return super().dequeue()

    def delete_queue(self):
        self.connection.delete(self.delayed_key)
        return super().delete_queue()

    def purge_queue(self):
        self.connection.delete(self.delayed_key)
        return super().purge_queue()


class _DelayedOn:
    """A delayed enqueue through the shared DelayingRedis broker's connection (its sorted set, scored by `when`)."""

    def __init__(self, broker, when):
        self.broker, self.when = broker, when
        self.list_key = broker.list_key

    def enqueue(self, task):
        return self.broker.connection.zadd(self.broker.delayed_key, {task: self.when.timestamp()})


def enqueue_deliveries_at(delivery_ids, when):
    """Hand delivery ids to the workers at `when` (a retry's due time), one task per chunk.

    Both brokers keep the task until its time: the ORM broker's table in its `lock` column
    (taken within a poll, 0.2 s, of `when`), the Redis broker in DelayingRedis's sorted set
    (taken within a second or so). The sweep enqueues anything still due after
    DELIVERY_STALE_SECONDS either way.
    """
    size = settings.FANOUT_CHUNK_SIZE
    for start in range(0, len(delivery_ids), size):
        _enqueue("notifications.tasks.send_deliveries", list(delivery_ids[start:start + size]), when=when)


def enqueue_invitations(user_ids):
    """Hand new accounts' invitation emails to the workers, INVITATION_BATCH_SIZE people a task."""
    size = max(settings.INVITATION_BATCH_SIZE, 1)
    for start in range(0, len(user_ids), size):
        _enqueue("notifications.tasks.send_invitations", list(user_ids[start:start + size]))


def enqueue_digests(recipient_ids):
    _enqueue("notifications.tasks.send_digests", recipient_ids)


def ensure_sweep_schedule(sender=None, using="default", **kwargs):
    """The periodic sweep (reclaims, retries, schedules). Installed after every migrate, also after a test flush."""
    Schedule.objects.using(using).update_or_create(
        name=SWEEP_SCHEDULE,
        defaults={"func": "notifications.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1,
                  "repeats": -1},
    )


# --- what the probes read (readiness, /metrics) -------------------------------------------

def queue_depth():
    """Tasks waiting in the broker and due now (ORM: lock passed; Redis: the list's length)."""
    return get_broker().queue_size()


def broker_reachable():
    """The broker answers: Redis to a PING; the ORM broker to a query on its table."""
    broker = get_broker()
    if Conf.ORM:
        broker.queue_size()
        return True
    return bool(broker.ping())


def worker_clusters():
    """How many qclusters report now (each saves its status every ~0.5 s, kept 3 s)."""
    return len(Stat.get_all())


def worker_heartbeat_age():
    """Seconds since a qcluster last reported its status, or None if none ever did (as far as the cache knows).

    A cluster's status lives 3 s in the broker's cache; the newest one seen is kept in the Django
    cache, so a cluster gone for longer shows the true age at the next look instead of vanishing.
    """
    stats = Stat.get_all()
    now = time.time()
    if stats:
        newest = max(stat.timestamp.timestamp() for stat in stats)
        cache.set(LAST_HEARTBEAT_KEY, newest, timeout=None)
    else:
        newest = cache.get(LAST_HEARTBEAT_KEY)
    return None if newest is None else max(now - newest, 0.0)


def ensure_retention_schedule(sender=None, using="default", **kwargs):
    """The daily retention purge (RETENTION_DELIVERY_DAYS, RETENTION_INBOX_DAYS). Installed like the sweep.

    Its first run is at 03:00 (TIME_ZONE) tomorrow, so starting a fresh install is not a purge.
    """
    first_run = (timezone.localtime() + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    Schedule.objects.using(using).update_or_create(
        name=RETENTION_SCHEDULE,
        defaults={"func": "notifications.tasks.retention_purge", "schedule_type": Schedule.DAILY, "repeats": -1},
        create_defaults={"func": "notifications.tasks.retention_purge", "schedule_type": Schedule.DAILY,
                         "repeats": -1, "next_run": first_run},
    )


def ensure_roster_schedule(sender=None, using="default", **kwargs):
    """The OneRoster REST sync, every ONEROSTER_SYNC_MINUTES, only while ONEROSTER_BASE_URL is set. Installed like the sweep.

    Without a base URL the schedule is removed, so turning the sync off is unsetting the variable and migrating.
    """
    if not settings.ONEROSTER_BASE_URL:
        Schedule.objects.using(using).filter(name=ROSTER_SCHEDULE).delete()
        return
    Schedule.objects.using(using).update_or_create(
        name=ROSTER_SCHEDULE,
        defaults={"func": "accounts.tasks.roster_sync", "schedule_type": Schedule.MINUTES,
                  "minutes": max(settings.ONEROSTER_SYNC_MINUTES, 1), "repeats": -1},
    )


def _ignore_stop_signals():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Sentinel(q_cluster.Sentinel):
    """django-q2's sentinel, and through it the pusher, monitor and workers it forks, deaf to SIGTERM.

    django-q2 1.11 leaves SIGTERM at its default (die) in these processes, so a SIGTERM sent to the
    whole process group (systemd's KillMode=control-group, a terminal) killed them all at once: in-hand
    tasks were lost, and the master, stopping the cluster from its own handler, waited forever in
    `stop_event.set()` for the dead sentinel to acknowledge the wake-up (a multiprocessing Condition
    counts its sleepers). Now only the master acts on the signal, and the cluster stops in its
    orderly way: the pusher stops, each worker finishes its task and exits, results are saved.
    A worker past its timeout is still killed by the sentinel's SIGTERM (see `_worker`).
    """

    def __init__(self, *args):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            super().__init__(*args, start=False)  # sets SIGTERM back to its default: blocked until ignored
            _ignore_stop_signals()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        self.start()

    def spawn_worker(self):
        self.spawn_process(_worker, self.task_queue, self.result_queue, Value("f", -1), self.timeout)

    def spawn_process(self, target, *args):
        if target is not _worker:
            return super().spawn_process(target, *args)
        # As django-q2's spawn_process does for its worker function: the sentinel guards it by its timer.
        process = q_cluster.get_mp_context().Process(target=target, args=args, name=f"Process-{uuid.uuid4().hex}")
        process.daemon = Conf.DAEMONIZE_WORKERS
        process.timer = args[2]
        self.pool.append(process)
        process.start()
        return process


def _worker(task_queue, result_queue, timer, timeout):
    """django-q2's worker, which lets SIGTERM kill it only once the sentinel has timed it out (timer 0)."""

    def on_sigterm(signum, frame):
        if timer.get_obj().value == 0:  # read without the timer's lock, which the sentinel holds meanwhile
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    q_worker(task_queue, result_queue, timer, timeout)


class Cluster(q_cluster.Cluster):
    """django-q2's cluster whose processes stop in order whoever of them gets SIGTERM or SIGINT."""

    def start(self):
        # As django-q2's Cluster.start, with _Sentinel.
        if setproctitle:
            setproctitle.setproctitle(f"qcluster {q_cluster.current_process().name} {self.name}")
        self.stop_event = q_cluster.Event()
        self.start_event = q_cluster.Event()
        self.sentinel = q_cluster.get_mp_context().Process(
            target=_Sentinel, name=f"Process-{uuid.uuid4().hex}",
            args=(self.stop_event, self.start_event, self.cluster_id, self.broker, self.timeout),
        )
        self.sentinel.start()
        while self.start_event and not self.start_event.is_set():
            if not self.sentinel.is_alive():
                if self.sentinel.exitcode == 0:
                    break  # stopped by a signal while starting
                raise RuntimeError(f"Q Cluster {self.name} failed to start: sentinel exited with code "
                                   f"{self.sentinel.exitcode}")
            time.sleep(0.1)
        return self.pid


def cluster_run(*, run_once=False):
    """Run a worker cluster until SIGTERM or SIGINT (manage.py qcluster)."""
    cluster = Cluster()
    cluster.start()
    if run_once:
        cluster.stop()
