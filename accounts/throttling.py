"""Request throttles and account lockout, both kept in the shared cache so every process agrees.

Rates come from settings.API_THROTTLE_RATES, read at each request (not at import) so
they follow the settings a test or a deployment gives.
"""

import hashlib
import time
import unicodedata

from django.conf import settings
from django.core.cache import cache
from rest_framework import throttling
from rest_framework.exceptions import Throttled


class LockedOut(Throttled):
    default_detail = "Too many failed attempts; try again later."
    default_code = "locked_out"


class _SettingsRateMixin:
    def get_rate(self):
        return settings.API_THROTTLE_RATES.get(self.scope)


class _CountingMixin:
    """Requests counted in a window that opens with the first request and lasts the rate's period: a counter
    in the cache, incremented (the window's first request adds it), where DRF's sliding window reads and
    writes back the time of every request in the window, a list of up to the rate's number (3,000 a minute
    for a user) pickled both ways on every request. The busiest doors (every API request) use it.

    Retry-After is the whole period, an upper bound: the window's opening is not kept.
    """

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            count = self.cache.incr(self.key)
        except ValueError:  # no window open: this request opens one (or, losing the race, counts in it)
            if self.cache.add(self.key, 1, self.duration):
                return True
            count = self.cache.incr(self.key)
        return count <= self.num_requests

    def get_cache_key(self, request, view):
        key = super().get_cache_key(request, view)
        return None if key is None else f"{key}:count"

    def wait(self):
        return self.duration


class AnonThrottle(_CountingMixin, _SettingsRateMixin, throttling.AnonRateThrottle):
    scope = "anon"


class UserThrottle(_CountingMixin, _SettingsRateMixin, throttling.UserRateThrottle):
    scope = "user"

    def get_cache_key(self, request, view):
        # One budget per API key, so two integrations of one user do not starve each other.
        key = getattr(request.auth, "prefix", None) if request.auth is not None else None
        if key and request.user and request.user.is_authenticated:
            return self.cache_format % {"scope": self.scope, "ident": f"key-{key}"}
        return super().get_cache_key(request, view)


class _AddressThrottle(_SettingsRateMixin, throttling.SimpleRateThrottle):
    """Requests per client address (it only reads request.META, so a Django request will do)."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def check(self, request):
        """Count this request; raise Throttled when the address is over its rate."""
        if not self.allow_request(request, None):
            raise Throttled(wait=self.wait())


class LoginThrottle(_AddressThrottle):
    """Sign-in attempts per client address, successful or not, whichever door they use."""

    scope = "login"


class PasswordResetThrottle(_AddressThrottle):
    """Password reset requests per client address."""

    scope = "password_reset"


class KeyFailureThrottle(_SettingsRateMixin, throttling.SimpleRateThrottle):
    """Failed API-key attempts per client address: counted only on failure."""

    scope = "api_key_failure"

    def __init__(self, request):
        super().__init__()
        self.key = self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def check(self):
        """Raise Throttled when this address has failed too often lately."""
        self.history = cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            raise Throttled(wait=self.wait())

    def record_failure(self):
        history = [t for t in cache.get(self.key, []) if t > self.timer() - self.duration]
        cache.set(self.key, [self.timer(), *history][: self.num_requests + 1], self.duration)


class Lockout:
    """Failures for one account (`kind` + `ident`); refused for LOCKOUT_SECONDS after LOCKOUT_FAILURES of them.

    The count is an atomic cache increment, so concurrent guesses from several processes all count.
    """

    def __init__(self, kind, ident, *, clock=time.time):
        digest = hashlib.sha256(str(ident).encode()).hexdigest()
        self.count_key = f"lockout:{kind}:{digest}:failures"
        self.lock_key = f"lockout:{kind}:{digest}:until"
        self.clock = clock

    def check(self):
        until = cache.get(self.lock_key)
        if until and until > self.clock():
            raise LockedOut(wait=until - self.clock())

    def record_failure(self):
        cache.add(self.count_key, 0, settings.LOCKOUT_SECONDS)
        try:
            failures = cache.incr(self.count_key)
        except ValueError:  # expired between add and incr
            cache.set(self.count_key, 1, settings.LOCKOUT_SECONDS)
            failures = 1
        if failures >= settings.LOCKOUT_FAILURES:
            cache.set(self.lock_key, self.clock() + settings.LOCKOUT_SECONDS, settings.LOCKOUT_SECONDS)
            cache.delete(self.count_key)

    def reset(self):
        cache.delete(self.count_key)


def username_key(username):
    """The form of a username that every spelling signing in to the same account shares.

    Authentication looks a username up exactly, after the sign-in form has trimmed it and
    applied NFKC (Django's UsernameField, as AbstractBaseUser.normalize_username) and the API
    serializer has trimmed it. Case-folding on top merges spellings that differ only by case:
    on a case-insensitive database collation they are the same account, and elsewhere a shared
    lockout only errs on the side of refusing.
    """
    return unicodedata.normalize("NFKC", str(username or "")).strip().casefold()


class SignInGuard:
    """The throttle and lockout of every sign-in door (API token, student pages, console).

    `check()` counts the attempt against the client address (API_THROTTLE_LOGIN) and refuses
    an account locked out after LOCKOUT_FAILURES failures; both raise Throttled (LockedOut
    for the account) with the seconds to wait. The door then reports `failed()` or `succeeded()`.
    """

    def __init__(self, request, username):
        self.request = request
        self.lockout = Lockout("login", username_key(username))

    def check(self):
        LoginThrottle().check(self.request)
        self.lockout.check()

    def failed(self):
        self.lockout.record_failure()

    def succeeded(self):
        self.lockout.reset()
