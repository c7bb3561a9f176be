"""Roles are Django groups with a fixed set of permissions, kept in sync after every migrate."""

from django.contrib.auth.management import create_permissions

from .models import Role

ROLE_APPS = ("notifications", "accounts", "channels_app")

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
}


def sync_roles(using="default"):
    """Create the role groups and give them their permissions (idempotent).

    Runs after every migrate (post_migrate), when every model's permissions exist;
    a test flush empties the groups and this puts them back.
    """
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

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
