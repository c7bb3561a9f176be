from django.urls import include, path

from . import webhooks

urlpatterns = [
    path("twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("anymail/", include("anymail.urls")),
]
