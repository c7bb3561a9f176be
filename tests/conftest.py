import os

import pytest
from django.contrib.auth.models import Group
from django.utils import translation
from django_q.conf import Conf

from accounts.models import Cohort, Role, User

from .browser import browser, live_server, page  # noqa: F401  (fixtures)
from .peers import PUSH_DNS, HTTPPeer, SMTPPeer, Worker


def redis_available():
    url = os.environ.get("REDIS_URL")
    if not url:
        return False
    import redis

    try:
        return redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


BROKERS = ["orm", pytest.param("redis", marks=pytest.mark.skipif(
    not redis_available(), reason="REDIS_URL is not set or Redis does not answer: the Redis broker is not tested"))]


@pytest.fixture(autouse=True)
def thread_language():
    """Each test ends in the language it started in: a request for a French user or page activates French
    for the thread (LocaleMiddleware, UserLanguageMiddleware), and a command run after it in the same
    thread would speak French."""
    language = translation.get_language()
    yield
    translation.activate(language)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Hashing the fixtures' passwords with PBKDF2 (about 0.3 s a user) dominated the suite's time; the hasher
    is not under test. Sign-in, password change and rehashing still run, through MD5. A test about hashers
    sets its own list."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """Each test starts with an empty cache (breakers, throttles, lockouts), as it does with the
    database cache, whose table is emptied with the database. Only this run's keys are deleted."""
    if settings.REDIS_URL:
        import redis

        client = redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(f"{settings.CACHES['default']['KEY_PREFIX']}:*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def smtp_peer(settings):
    peer = SMTPPeer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = peer.port
    yield peer
    peer.stop()


@pytest.fixture
def http_peer():
    peers = []

    def start(responder=None):
        peer = HTTPPeer(responder).start()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
def push_dns(settings):
    """Push hosts resolve from this table ({host: [addresses]}); Google's and Mozilla's to public addresses."""
    settings.PUSH_HOST_RESOLVER = "tests.peers.resolve_push_host"
    settings.PUSH_ALLOW_HTTP_ENDPOINTS = False
    PUSH_DNS.update({"fcm.googleapis.com": ["142.250.74.74"], "updates.push.services.mozilla.com": ["34.117.59.81"]})
    yield PUSH_DNS
    PUSH_DNS.clear()


@pytest.fixture
def broker(request, monkeypatch):
    """Point this process's django-q2 at the broker named by the test's parameter."""
    name = getattr(request, "param", "orm")
    if name == "orm":
        monkeypatch.setattr(Conf, "ORM", "default")
        monkeypatch.setattr(Conf, "BROKER_CLASS", None)
    else:
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", os.environ["REDIS_URL"])
        monkeypatch.setattr(Conf, "BROKER_CLASS", "notifications.engine.queue.DelayingRedis")
    return name


@pytest.fixture
def workers(broker, settings):
    """Start real qcluster processes on the test's broker and database; all are stopped at the end."""
    started = []

    def start(**env):
        env.setdefault("EMAIL_HOST", settings.EMAIL_HOST)
        env.setdefault("EMAIL_PORT", settings.EMAIL_PORT)
        env.setdefault("Q_WORKERS", 2)
        env["Q_BROKER"] = broker
        worker = Worker(**env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def make_user(username, *, role=Role.USER, **fields):
    fields.setdefault("email", f"{username}@students.example.edu")
    user = User.objects.create_user(username=username, password="pw-" + username, **fields)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def student(db):
    return make_user("s1000001", first_name="Ada", last_name="Lovelace")


@pytest.fixture
def staff_user(db):
    return make_user("t2000001", role=Role.STAFF, is_staff=True, email="teacher@example.edu")


@pytest.fixture
def admin_user(db):
    return make_user("a3000001", role=Role.ADMIN, is_staff=True, is_superuser=True, email="admin@example.edu")


@pytest.fixture
def cohort(db, staff_user):
    cohort = Cohort.objects.create(code="cs101-2026", name="Computer Science 101")
    cohort.managers.add(staff_user)
    return cohort
