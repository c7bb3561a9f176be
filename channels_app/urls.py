from django.urls import path

from . import webhooks

urlpatterns = [
    path("twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("twilio/inbound/", webhooks.twilio_inbound, name="twilio-inbound"),
    path("anymail/<str:esp>/tracking/", webhooks.anymail_tracking_webhook, name="anymail-tracking"),
]
