from django.contrib import admin

from .models import CategoryDefault, Delivery, Notification


class ReadOnlyAdmin(admin.ModelAdmin):
    """History: visible, never edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("title", "notifier", "category", "priority", "status", "recipient_count", "sender", "created_at")
    list_filter = ("status", "category", "priority", "notifier", "created_at")
    search_fields = ("title",)
    date_hierarchy = "created_at"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "notification", "recipient", "channel", "status", "attempts", "sent_at", "last_error")
    list_filter = ("channel", "status")
    search_fields = ("recipient__username", "recipient__email", "provider_message_id")
    list_select_related = ("notification", "recipient")
    raw_id_fields = ("notification", "recipient")


@admin.register(CategoryDefault)
class CategoryDefaultAdmin(admin.ModelAdmin):
    list_display = ("category", "channel", "enabled", "digest")
    list_editable = ("enabled", "digest")
