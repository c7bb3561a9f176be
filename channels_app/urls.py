from django.urls import path

from . import webhooks

urlpatterns = [
    path("twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("anymail/<str:esp>/tracking/", webhooks.anymail_tracking_webhook, name="anymail-tracking"),
]
