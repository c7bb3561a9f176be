from django.urls import path

from . import views

urlpatterns = [
    path("inbox/", views.inbox_list, name="inbox"),
    path("inbox/<int:notification_id>/", views.inbox_detail, name="inbox-detail"),
    path("ack/<str:token>/", views.acknowledge, name="acknowledge"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
