"""The compliance ledger in the console: a read-only list (no add, change or delete, even for a superuser),
an alert's ledger on its Watch page, and the CSV and JSON exports. Thin: reads and exports are
notifications.services.ledger's.

Who sees it: whoever has `notifications.view_ledgerentry` (Admin; the Emergency role).
"""

import json
from datetime import datetime, time, timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin.filters import DateFieldListFilter
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpResponseBadRequest, QueryDict, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .admin_base import ReadOnlyAdmin
from .models import LedgerEntry, Notification
from .services.ledger import (
    alert_scope, ledger_alert_entries, ledger_between, ledger_chain_sentence, ledger_chain_state,
    ledger_export, ledger_range_clean, range_scope,
)

VIEW_PERMISSION = "notifications.view_ledgerentry"
WATCH_ENTRIES = 200  # an alert's page lists this many; the exports hold them all


def details_text(data):
    """An entry's details on one line, as recorded."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True) if data else ""


def export_response(filename, content_type, chunks):
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class AlertFilter(admin.SimpleListFilter):
    """The ledger of one alert: the most recent emergency alerts are offered, any other by its id in the URL."""

    title = _("alert")
    parameter_name = "alert"
    OFFERED = 30

    def lookups(self, request, model_admin):
        alerts = (Notification.objects.filter(notifier=Notification.EMERGENCY_NOTIFIER).order_by("-pk")
                  .values_list("pk", "title")[:self.OFFERED])
        return [(str(pk), format_html('#{} <span translate="no">{}</span>', pk, title)) for pk, title in alerts]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(notification_id=int(value))


class LedgerRangeForm(forms.Form):
    """The console's date-range export: whole days, in the viewer's time zone, both included."""

    since = forms.DateField(label=_("from"), widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("to (included)"), widget=forms.DateInput(attrs={"type": "date"}))
    format = forms.ChoiceField(label=_("file format"), choices=[("csv", "CSV"), ("json", "JSON")])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until"):
            zone = timezone.get_current_timezone()
            since = timezone.make_aware(datetime.combine(cleaned["since"], time.min), zone)
            until = timezone.make_aware(datetime.combine(cleaned["until"] + timedelta(days=1), time.min), zone)
            try:
                cleaned["since"], cleaned["until"] = ledger_range_clean(since, until)
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    for message in messages:
                        self.add_error(field, message)
        return cleaned


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):  # read-only for everyone, a superuser too
    list_display = ("id", "at", "event", "alert", "by", "details")
    list_filter = ("event", ("at", DateFieldListFilter), AlertFilter)
    search_fields = ("actor", "=notification_id", "=incident_id")
    date_hierarchy = "at"
    ordering = ("-id",)  # the newest first; the chain runs the other way
    list_per_page = 100
    fields = ("id", "at", "event", "alert", "incident_id", "by", "details", "previous_entry_digest", "entry_digest")
    readonly_fields = fields
    change_list_template = "admin/notifications/ledgerentry/change_list.html"

    def get_actions(self, request):
        return {}

    def get_queryset(self, request):
        title = Notification.objects.filter(pk=OuterRef("notification_id")).values("title")[:1]
        return super().get_queryset(request).annotate(alert_title=Subquery(title))

    @admin.display(description=_("alert"), ordering="notification_id")
    def alert(self, entry):
        title = getattr(entry, "alert_title", None)
        if title is None:  # the notification is gone; its ledger stays
            return f"#{entry.notification_id}"
        return format_html('<a href="{}">#{} <span translate="no">{}</span></a>',
                           reverse("admin:notifications_notification_change", args=[entry.notification_id]),
                           entry.notification_id, title)

    @admin.display(description=_("details"))
    def details(self, entry):
        # As recorded (keys and values are data, not the console's words).
        return format_html('<code translate="no">{}</code>', details_text(entry.data))

    @admin.display(description=_("by"), ordering="actor")
    def by(self, entry):
        return format_html('<span translate="no">{}</span>', entry.actor) if entry.actor else "—"

    @admin.display(description=_("previous entry's digest"))
    def previous_entry_digest(self, entry):
        return format_html('<code translate="no">{}</code>', entry.previous_digest) if entry.previous_digest else "—"

    @admin.display(description=_("digest"))
    def entry_digest(self, entry):
        return format_html('<code translate="no">{}</code>', entry.digest)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("export/", self.admin_site.admin_view(self.range_export_view), name="%s_%s_export" % info),
            path("alert/<int:notification_id>/export/", self.admin_site.admin_view(self.alert_export_view),
                 name="%s_%s_alert_export" % info),
        ] + super().get_urls()

    def _check(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied

    def changelist_view(self, request, extra_context=None):
        self._check(request)
        state = ledger_chain_state()
        context = {"chain": state, "chain_sentence": ledger_chain_sentence(state),
                   "range_form": LedgerRangeForm(initial={
                       "since": timezone.localdate() - timedelta(days=30), "until": timezone.localdate(),
                       "format": "csv"}),
                   "range_url": reverse("admin:notifications_ledgerentry_export")}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def range_export_view(self, request):
        """The ledger of a period (?since=&until=&format=csv|json) as a download; a bad period: the list, with
        the form's errors."""
        self._check(request)
        form = LedgerRangeForm(request.GET)
        if not form.is_valid():
            request.GET = QueryDict()  # the list itself, unfiltered, with the form's errors
            response = self.changelist_view(request, {"range_form": form})
            response.status_code = 400
            return response
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
        return export_response(*ledger_export(ledger_between(since, until), fmt=form.cleaned_data["format"],
                                              scope=range_scope(since, until), by=request.user))

    def alert_export_view(self, request, notification_id):
        """An alert's thread (its incident's notifications) as CSV or JSON (?format=)."""
        self._check(request)
        entries = ledger_alert_entries(notification_id)
        if entries is None:
            raise Http404(gettext("The ledger holds nothing of this alert."))
        fmt = request.GET.get("format", "csv")
        if fmt not in ("csv", "json"):
            return HttpResponseBadRequest(gettext("Choose json or csv."))
        return export_response(*ledger_export(entries, fmt=fmt, scope=alert_scope(notification_id, entries),
                                              by=request.user))


def ledger_watch_context(request, notification):
    """The Watch page's "Ledger" section of an emergency alert, for whoever may read the ledger; {} otherwise."""
    if not (notification.is_emergency and request.user.has_perm(VIEW_PERMISSION)):
        return {}
    entries = ledger_alert_entries(notification.pk)
    if entries is None:
        entries = LedgerEntry.objects.none()
    state = ledger_chain_state(entries)
    export = reverse("admin:notifications_ledgerentry_alert_export", args=[notification.pk])
    rows = [{"entry": entry, "details": details_text(entry.data)} for entry in entries[:WATCH_ENTRIES]]
    return {"ledger": {
        "entries": rows, "more": max(0, entries.count() - WATCH_ENTRIES), "chain": state,
        "chain_sentence": ledger_chain_sentence(state),
        "csv_url": f"{export}?format=csv", "json_url": f"{export}?format=json",
        "list_url": reverse("admin:notifications_ledgerentry_changelist") + f"?alert={notification.pk}",
    }}
