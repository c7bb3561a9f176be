"""Sending again with the same idempotency key creates nothing new."""

import pytest

from notifications.models import Delivery, Notification
from notifications.engine import notification_fan_out
from notifications.services import IdempotencyConflict, notification_send

from .delivery_helpers import students

pytestmark = pytest.mark.django_db


def send(admin_user, users, **fields):
    request = dict(sender=admin_user, notifier="academic", category="deadline", title="Essay due",
                   body="Friday 17:00.", channels=["inbox"], audience={"users": [u.username for u in users]},
                   idempotency_key="lms-essay-42")
    return notification_send(**{**request, **fields})


def test_it_returns_the_same_notification_for_the_same_key_and_request(admin_user):
    users = students("s5000", 3)
    first, created = send(admin_user, users)
    notification_fan_out(first.pk)
    deliveries = set(Delivery.objects.values_list("id", flat=True))

    again, created_again = send(admin_user, list(reversed(users)))

    assert created and not created_again
    assert again.pk == first.pk
    assert Notification.objects.count() == 1
    assert set(Delivery.objects.values_list("id", flat=True)) == deliveries and len(deliveries) == 3


def test_it_refuses_the_same_key_for_a_different_request(admin_user):
    users = students("s5100", 2)
    first, _ = send(admin_user, users)

    with pytest.raises(IdempotencyConflict) as raised:
        send(admin_user, users, body="Monday 09:00.")

    assert raised.value.notification == first
    assert list(Notification.objects.values_list("body", flat=True)) == ["Friday 17:00."]


def test_it_treats_different_keys_as_different_notifications(admin_user):
    users = students("s5200", 1)
    send(admin_user, users)
    _, created = send(admin_user, users, idempotency_key="lms-essay-43")

    assert created and Notification.objects.count() == 2
