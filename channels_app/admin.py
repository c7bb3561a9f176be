from django.contrib import admin

from notifications.admin import ReadOnlyAdmin

from .models import InboxMessage, PerformanceMetric, PushSubscription


@admin.register(PerformanceMetric)
class PerformanceMetricAdmin(ReadOnlyAdmin):
    list_display = ("recorded_at", "notifier", "channel", "operation", "items", "succeeded", "failed", "duration_ms")
    list_filter = ("notifier", "channel", "operation", "ok")


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("title", "recipient", "created_at", "read_at", "acknowledged_at")
    search_fields = ("title", "recipient__username")
    list_select_related = ("recipient",)
    raw_id_fields = ("notification", "recipient")


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("user", "endpoint", "created_at")
    search_fields = ("user__username", "endpoint")
    raw_id_fields = ("user",)
