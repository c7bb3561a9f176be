"""The operations console: Django's admin site, open only to the Admin and Staff roles.

`is_staff` alone is not enough: a User or API_User flagged staff by mistake is still refused.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

CONSOLE_ROLES = ("Admin", "Staff")


def console_role(user):
    """'admin', 'staff' or None: what the console lets this user do."""
    if not (user.is_active and user.is_authenticated and user.is_staff):
        return None
    if user.is_superuser:
        return "admin"
    cached = getattr(user, "_console_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.filter(name__in=CONSOLE_ROLES).values_list("name", flat=True))
    role = "admin" if "Admin" in names else "staff" if "Staff" in names else None
    user._console_role = role
    return role


class ConsoleSite(admin.AdminSite):
    site_header = "FlashNotify console"
    site_title = "FlashNotify console"
    index_title = "Operations"

    @property
    def login_form(self):
        # Imported here: this module is loaded with the app registry (INSTALLED_APPS), before the auth forms can be.
        from .forms import ConsoleSignInForm

        return ConsoleSignInForm

    def has_permission(self, request):
        return console_role(request.user) is not None

    def get_urls(self):
        from django.urls import path

        from channels_app.admin import health_channel, health_index

        return [
            path("health/", self.admin_view(health_index), name="health"),
            path("health/<str:channel>/", self.admin_view(health_channel), name="health_channel"),
        ] + super().get_urls()


class ConsoleAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.ConsoleSite"
