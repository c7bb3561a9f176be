from django.urls import path

from . import cap_views, views

urlpatterns = [
    path("inbox/", views.inbox_list, name="inbox"),
    path("inbox/<int:notification_id>/", views.inbox_detail, name="inbox-detail"),
    path("preferences/", views.preferences, name="preferences"),
    path("push/subscriptions/", views.push_subscription_create, name="push-subscribe"),
    path("push/subscriptions/remove/", views.push_subscription_remove, name="push-unsubscribe"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("ack/<str:token>/", views.acknowledge, name="acknowledge"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("cap/", cap_views.CapFeedView.as_view(), name="cap-feed"),
    path("cap/<int:notification_id>.xml", cap_views.CapDocumentView.as_view(), name="cap-document"),
]
