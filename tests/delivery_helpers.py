"""Helpers for engine tests: run the engine's services in this process, at a chosen moment."""

import base64
import os

import pytest
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from channels_app.breaker import CircuitBreaker
from notifications.models import Delivery
from notifications.engine import deliveries_send, notification_fan_out


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fan_out_and_send(notification, *, now=None):
    """Fan the notification out and send every due delivery once, as the workers would."""
    notification_fan_out(notification.pk, now=now)
    ids = list(Delivery.objects.filter(notification=notification, status="queued").values_list("id", flat=True))
    return deliveries_send(ids, now=now)


def send_again(notification, *, now):
    ids = list(Delivery.objects.filter(notification=notification).values_list("id", flat=True))
    return deliveries_send(ids, now=now)


class BrowserKeys:
    """What a browser makes when it subscribes to web push: an EC key pair and an auth secret."""

    def __init__(self):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)
        self.p256dh = b64url(self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
        self.auth = b64url(self.auth_secret)


def reset_breakers():
    for provider in ("email", "sms", "push"):
        CircuitBreaker(provider).reset()


@pytest.fixture
def closed_breakers(django_db_blocker):
    """Breakers live in the shared cache (Redis outlives a test): start with every one closed."""
    with django_db_blocker.unblock():
        reset_breakers()


def students(prefix, count, **fields):
    """`count` active students made in one query (no password hashing: they never sign in here)."""
    from accounts.models import User

    User.objects.bulk_create([User(username=f"{prefix}{n:05d}", email=f"{prefix}{n:05d}@students.example.edu",
                                   first_name=f"Student{n}", **fields) for n in range(count)])
    return list(User.objects.filter(username__startswith=prefix).order_by("pk"))


def run_queued_tasks(on_commit):
    """Take every task waiting in the (ORM) queue and run it here, as a worker would (each with its
    on-commit hand-offs run), until none is left. Returns [(task function's path, its result)].
    `on_commit`: pytest-django's django_capture_on_commit_callbacks."""
    ran = []
    while OrmQ.objects.exists():
        for queued in list(OrmQ.objects.order_by("pk")):
            task = queued.task
            queued.delete()
            with on_commit(execute=True):
                ran.append((task["func"], import_string(task["func"])(*task["args"], **task["kwargs"])))
    return ran
