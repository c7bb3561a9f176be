"""Roles are Django groups with a fixed set of permissions, kept in sync after every migrate.

The role checks every door uses are defined here, once: `is_admin` (may reach anyone) and
`console_role` (what the operations console lets a user do).
"""

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

from .models import Role

ROLE_APPS = ("notifications", "accounts", "channels_app")
CONSOLE_ROLES = (Role.ADMIN, Role.STAFF)

# Admin gets every permission; the others these codenames in ROLE_APPS.
ROLE_PERMISSIONS = {
    Role.STAFF: [
        "add_notification", "view_notification", "change_notification",
        "view_delivery", "change_delivery",
        "view_cohort", "view_user",
        "view_inboxmessage", "view_performancemetric",
    ],
    Role.USER: [],
    Role.API_USER: ["add_notification", "view_notification", "view_delivery", "view_cohort"],
    Role.EMERGENCY: ["send_emergency", "view_incidenttemplate", "view_incident", "change_incident",
                     "view_smsreply", "view_ledgerentry"],
    Role.ON_DUTY: ["view_smsreply"],
}


def is_admin(user):
    """An administrator reaches anyone and sees everything."""
    return user.is_superuser or user.groups.filter(name=Role.ADMIN).exists()


def console_role(user):
    """'admin', 'staff' or None: what the console lets this user do.

    `is_staff` alone is not enough: a User or API_User flagged staff by mistake is still refused.
    """
    if not (user.is_active and user.is_authenticated and user.is_staff):
        return None
    if user.is_superuser:
        return "admin"
    cached = getattr(user, "_console_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.filter(name__in=CONSOLE_ROLES).values_list("name", flat=True))
    role = "admin" if Role.ADMIN in names else "staff" if Role.STAFF in names else None
    user._console_role = role
    return role


def sync_roles(using="default"):
    """Create the role groups and give them their permissions (idempotent).

    Runs after every migrate (post_migrate), when every model's permissions exist;
    a test flush empties the groups and this puts them back.
    """
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    admin, _ = Group.objects.using(using).get_or_create(name=Role.ADMIN)
    admin.permissions.set(Permission.objects.using(using).all())
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        group.permissions.set(Permission.objects.using(using).filter(
            codename__in=codenames, content_type__app_label__in=ROLE_APPS))


def sync_roles_after_migrate(sender, using="default", **kwargs):
    sync_roles(using=using)
