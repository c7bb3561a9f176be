"""The operations console: Django's admin site, open only to the Admin and Staff roles.

Apps add pages of their own (the Health pages) with `register_page` from their admin module,
as they register model admins, so the site knows nothing of them.
"""

from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _

from .forms import ConsoleSignInForm
from .roles import console_role
from .sso_views import SignOutView


class ConsoleSite(admin.AdminSite):
    site_header = _("FlashNotify console")
    site_title = _("FlashNotify console")
    index_title = _("Operations")
    login_form = ConsoleSignInForm

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pages = []

    def has_permission(self, request):
        return console_role(request.user) is not None

    def logout(self, request, extra_context=None):
        # Staff who came through single sign-on sign out as on the student pages: with single logout.
        if request.method == "POST" and request.user.is_authenticated and request.user.sso_provider:
            return SignOutView.as_view()(request)
        return super().logout(request, extra_context)

    def register_page(self, route, view, *, name):
        """Serve `view` at /admin/<route> as `admin:<name>`, behind the console's sign-in and role gate."""
        self._pages.append((route, view, name))

    def get_urls(self):
        return [path(route, self.admin_view(view), name=name) for route, view, name in self._pages] \
            + super().get_urls()
