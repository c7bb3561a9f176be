"""django-q2 tasks: thin wrappers that call the services."""

from . import digest, services


def fan_out(notification_id):
    services.notification_fan_out(notification_id)


def send_deliveries(delivery_ids):
    return services.deliveries_send(delivery_ids)


def sweep():
    return services.deliveries_sweep()


def send_digests(recipient_ids):
    return digest.digests_send(recipient_ids)
