"""The AppConfig that installs django.contrib.admin with the role-checking console site.

Kept apart from accounts.admin_site, which imports models: INSTALLED_APPS loads this module
before any model exists.
"""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.ConsoleSite"
