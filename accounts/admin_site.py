"""The operations console: Django's admin site, open only to the Admin and Staff roles.

Apps add pages of their own (the Health pages) with `register_page` from their admin module,
as they register model admins, so the site knows nothing of them.

The home is a dashboard (sends running now, the last sends with their reach, what needs action,
the channels' health); the tables of internals (the task queue, tokens, metrics, subscriptions,
permission groups) are grouped under "System" for Admin and hidden from Staff.
"""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from channels_app.selectors import channels_status
from notifications.selectors import sends_needing_action, sends_recent, sends_running

from .forms import ConsoleSignInForm
from .roles import console_role
from .sso_views import SignOutView

# Apps whose tables are the machinery's, not a campus's: shown to Admin under "System" only.
SYSTEM_APPS = ("auth", "channels_app", "django_q", "token_blacklist")


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
            + [path("running.json", self.admin_view(self.running_view), name="running")] \
            + super().get_urls()

    def get_app_list(self, request, app_label=None):
        """The model tables this user may open; Staff never see the System ones."""
        apps = super().get_app_list(request, app_label)
        if console_role(request.user) == "admin":
            return apps
        return [app for app in apps if app["app_label"] not in SYSTEM_APPS]

    def each_context(self, request):
        context = super().each_context(request)
        if console_role(request.user) != "admin":  # the side navigation of every page
            context["available_apps"] = [app for app in context.get("available_apps", [])
                                         if app["app_label"] not in SYSTEM_APPS]
        return context

    def index(self, request, extra_context=None):
        """The dashboard: what is sending, what was sent, what needs action, how the channels are."""
        user = request.user
        apps = self.get_app_list(request)
        context = {
            "app_list": [app for app in apps if app["app_label"] not in SYSTEM_APPS],
            "system_apps": [app for app in apps if app["app_label"] in SYSTEM_APPS],
            "running": sends_running(user), "recent": sends_recent(user),
            "needs_action": sends_needing_action(user),
            "channels": channels_status() if user.has_perm("channels_app.view_performancemetric") else [],
            "running_url": reverse("admin:running", current_app=self.name),
        }
        return super().index(request, {**context, **(extra_context or {})})

    def running_view(self, request):
        """The home's live progress: every send running now that this user may see, as JSON."""
        return JsonResponse({"running": [{"id": row["notification"].pk, **row["progress"]}
                                         for row in sends_running(request.user)]})
