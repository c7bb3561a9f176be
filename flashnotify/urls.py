from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from notifications import probes

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="inbox", permanent=False)),
    path("admin/", admin.site.urls),
    path("metrics", probes.metrics, name="metrics"),  # Prometheus; protected, see notifications/probes.py
    path("", include("accounts.urls")),
    path("webhooks/", include("channels_app.urls")),
    path("api/v1/", include("flashnotify.api_urls")),
    path("", include("notifications.urls")),
]

handler400 = "flashnotify.error_pages.bad_request"
handler403 = "flashnotify.error_pages.permission_denied"
handler404 = "flashnotify.error_pages.not_found"
handler500 = "flashnotify.error_pages.server_error"
