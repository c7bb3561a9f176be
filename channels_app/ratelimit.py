"""A maximum rate per channel provider, shared by every worker through the cache.

The limit is a rate in messages per second with a burst of one second's worth (at least one
message): a generic cell rate algorithm (GCRA) keeps, per provider, the theoretical arrival time
(`tat`) of the next message. Asking for `n` messages at `now` grants those that fit (`tat - now`
stays within the burst) and moves `tat` on by one interval per granted message.

What is not granted is not sent: the send step defers it (`retrying`, with the reason and the time
its turn should come), and the wait is not counted as an attempt. The turns it is told are spread
after the turns told before (`horizon`, the last turn promised), so deferred messages of several
workers come back about one second's worth at a time instead of all at once (and then mostly
deferred again). A turn is a promise, not a reservation: a message that comes back is counted
like any other, so a rate is never spent twice.

The state lives in the cache every worker shares: on Redis one Lua script reads, decides and writes
it in a single round trip; on the database cache the same decision is made in one transaction that
locks the cache row first, so two workers never both spend the same budget.
"""

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction

logger = logging.getLogger(__name__)

# What each provider's rate is read from (messages per second; empty or 0: no limit).
RATE_LIMIT_SETTINGS = {"email": "EMAIL_RATE_LIMIT", "sms": "SMS_RATE_LIMIT", "push": "PUSH_RATE_LIMIT"}

# Two decisions at the same instant must not differ by a float's last bit.
EPSILON = 1e-6

# KEYS[1]: the provider's hash {tat, horizon}; ARGV: now, interval, burst (seconds), wanted.
# Returns {granted, first turn of the others}. Mirrors gcra() below.
GCRA_SCRIPT = """
local state = redis.call('HMGET', KEYS[1], 'tat', 'horizon')
local tat, horizon = tonumber(state[1] or '0'), tonumber(state[2] or '0')
local now, interval, burst, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if tat + 1 < now and horizon > now then horizon = now end
if tat < now then tat = now end
local granted = math.floor((now + burst - tat) / interval + 1e-6) + 1
if granted < 0 then granted = 0 end
if granted > wanted then granted = wanted end
tat = tat + granted * interval
local start = tat - burst
if horizon > start then start = horizon end
if wanted > granted then horizon = start + (wanted - granted) * interval end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat), 'horizon', string.format('%.6f', horizon))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, horizon) - now + burst) * 1000) + 60000)
return {granted, string.format('%.6f', start)}
"""


def configured_rate(setting):
    """The rate `setting` gives, in messages per second (0: no limit); ImproperlyConfigured when it is not one."""
    raw = str(getattr(settings, setting, "") or "").strip()
    if not raw:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate < 0:
        raise ImproperlyConfigured(f"{setting}={raw!r} is not a number of messages per second (0 or more).")
    return rate


def gcra(state, now, interval, burst, wanted):
    """(granted, first turn of the others, new state): the Lua script's twin. `state` is (tat, horizon)."""
    tat, horizon = state
    if tat + 1 < now:  # nothing sent for over a second: the turns told were not kept (a cancel), start afresh
        horizon = min(horizon, now)
    tat = max(tat, now)
    granted = max(0, min(wanted, math.floor((now + burst - tat) / interval + EPSILON) + 1))
    tat += granted * interval
    start = max(tat - burst, horizon)
    if wanted > granted:
        horizon = start + (wanted - granted) * interval
    return granted, start, (tat, horizon)


class RateLimiter:
    """The shared budget of one provider: `reserve(n)` grants what fits now and says when the rest may go."""

    def __init__(self, provider, rate, *, clock=time.time):
        self.provider = provider
        self.rate = float(rate)
        self.interval = 1.0 / self.rate
        # One second's worth of messages may leave at once (at least one): a worker that takes its
        # turn a little late does not lose the budget of the moment it missed.
        self.burst = (max(1, math.floor(self.rate)) - 1) * self.interval
        self.clock = clock
        self.key = f"ratelimit:{provider}"

    def reserve(self, wanted):
        """Return (granted, waits): the first `granted` of `wanted` messages may be sent now; the others
        should wait `waits[i]` seconds (each one interval after the previous one's turn)."""
        if wanted <= 0:
            return 0, []
        now = self.clock()
        if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):  # Django's RedisCache
            granted, start = self._reserve_redis(now, wanted)
        else:
            granted, start = self._reserve_in_transaction(now, wanted)
        # Each deferred message gets its own turn, one interval after the one before it.
        # (Never 0: a wait of 0 would read as "no Retry-After" and take the backoff instead.)
        waits = [max(start + i * self.interval - now, 0.001) for i in range(wanted - granted)]
        return granted, waits

    def _reserve_redis(self, now, wanted):
        key = cache.make_and_validate_key(self.key)
        client = cache._cache.get_client(key, write=True)
        granted, start = client.register_script(GCRA_SCRIPT)(
            keys=[key], args=[repr(now), repr(self.interval), repr(self.burst), wanted])
        return int(granted), float(start)

    def _reserve_in_transaction(self, now, wanted):
        """The database cache: lock the provider's row, then read, decide and write in one transaction."""
        database = router.db_for_write(cache.cache_model_class)
        connection = connections[database]
        table = connection.ops.quote_name(cache._table)
        key = cache.make_and_validate_key(self.key)
        with transaction.atomic(using=database):
            with connection.cursor() as cursor:
                # A no-op write takes the row's lock (PostgreSQL) or the database's (SQLite) up front.
                cursor.execute(f"UPDATE {table} SET expires = expires WHERE cache_key = %s", [key])
                locked = cursor.rowcount
            if not locked:  # the first use: create the row (one worker wins), then lock it
                cache.add(self.key, (0.0, 0.0), timeout=None)
                with connection.cursor() as cursor:
                    cursor.execute(f"UPDATE {table} SET expires = expires WHERE cache_key = %s", [key])
            granted, start, state = gcra(cache.get(self.key) or (0.0, 0.0), now, self.interval, self.burst, wanted)
            cache.set(self.key, state, timeout=None)
        return granted, start

    def snapshot(self):
        """{"provider", "rate", "next_free_in"}: seconds until one more message may go (0: now)."""
        if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):
            key = cache.make_and_validate_key(self.key)
            tat = float(cache._cache.get_client(key).hget(key, "tat") or 0.0)
        else:
            tat = (cache.get(self.key) or (0.0, 0.0))[0]
        return {"provider": self.provider, "rate": self.rate,
                "next_free_in": max(0.0, tat - self.burst - self.clock())}

    def reset(self):
        if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):
            key = cache.make_and_validate_key(self.key)
            cache._cache.get_client(key, write=True).delete(key)
        else:
            cache.delete(self.key)
