"""The text messages people sent us (Twilio's inbound webhook) in the console: a read-only list to see what
someone answered, the replies that matched no alert (unmatched) and the STOP, START and HELP keywords.

Who sees it: whoever has `notifications.view_smsreply` (Admin; the Emergency and On_Duty roles). Nobody adds,
changes or deletes one here: they are a record of what was received (erasing a person goes with theirs).
"""

from django.contrib import admin
from django.contrib.admin.filters import DateFieldListFilter
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .admin_base import ReadOnlyAdmin
from .models import SmsReply


class MatchedFilter(admin.SimpleListFilter):
    title = _("matched")
    parameter_name = "matched"

    def lookups(self, request, model_admin):
        return [("yes", _("answers an alert")), ("no", _("unmatched"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(notification__isnull=False)
        if self.value() == "no":
            return queryset.filter(notification__isnull=True)
        return queryset


@admin.register(SmsReply)
class SmsReplyAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "kind", "text", "from_number", "person", "alert")
    list_filter = ("kind", MatchedFilter, ("received_at", DateFieldListFilter))
    search_fields = ("from_number", "recipient__username", "recipient__first_name", "recipient__last_name",
                     "=notification__id")
    date_hierarchy = "received_at"
    list_select_related = ("recipient", "notification")
    list_per_page = 100
    fields = ("received_at", "kind", "body", "from_number", "to_number", "person", "alert", "message_sid")
    readonly_fields = fields

    def get_actions(self, request):
        return {}

    @admin.display(description=_("text"))
    def text(self, reply):
        # What they typed, as typed: data, not the console's words.
        return format_html('<span translate="no">{}</span>', reply.body[:160]) if reply.body else "—"

    @admin.display(description=_("person"), ordering="recipient__username")
    def person(self, reply):
        if reply.recipient is None:
            return _("unknown number")
        return format_html('<a href="{}" translate="no">{}</a>', reverse("admin:person", args=[reply.recipient_id]),
                           reply.recipient.get_full_name() or reply.recipient.username)

    @admin.display(description=_("alert"), ordering="notification_id")
    def alert(self, reply):
        if reply.notification is None:
            return _("unmatched")
        return format_html('<a href="{}">#{} <span translate="no">{}</span></a>',
                           reverse("admin:notifications_notification_change", args=[reply.notification_id]),
                           reply.notification_id, reply.notification.title)
