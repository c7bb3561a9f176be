from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="inbox", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("webhooks/", include("channels_app.urls")),
    path("", include("notifications.urls")),
]
