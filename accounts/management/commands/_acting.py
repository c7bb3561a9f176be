"""What the data-rights commands share: the person they act on and the administrator who asks."""

from django.core.management.base import CommandError

from accounts.models import User
from accounts.roles import is_admin


def user_named(username):
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username!r}: nothing was exported or changed.")
    return user


def acting_admin(username):
    """The active administrator named by --by, whom the admin history records."""
    admin = User.objects.filter(username=username, is_active=True).first()
    if admin is None or not is_admin(admin):
        raise CommandError(f"--by {username!r} is not an active administrator: nothing was exported or changed.")
    return admin
