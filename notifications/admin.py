"""The console's notification pages: compose (with a confirmation step), watch, act.

Thin: every write goes through notifications.services, every read through selectors.
Staff see and act only on the notifications of the cohorts they manage (and their own).
"""

from django.contrib import admin, messages
from django.contrib.admin.filters import DateFieldListFilter
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.roles import console_role
from channels_app.constants import Channel
from channels_app.models import PerformanceMetric, PushSubscription

from . import admin_sms, admin_templates, admin_watch, services  # noqa: F401 (admin_sms, admin_templates register their pages)
from .admin_base import ReadOnlyAdmin
from .admin_ledger import ledger_watch_context
from .console_compose import compose_view
from .console_selectors import delivery_export
from .health import health_channel, health_index
from .models import CategoryDefault, Delivery, InboxMessage, Notification
from .selectors import notification_progress, notifications_visible_to


def is_console_admin(request):
    return console_role(request.user) == "admin"


class SenderFilter(admin.SimpleListFilter):
    """Senders of the notifications this user may see (never the whole user table)."""

    title = "sender"
    parameter_name = "sender"

    def lookups(self, request, model_admin):
        senders = (notifications_visible_to(request.user).filter(sender__isnull=False)
                   .values_list("sender_id", "sender__username").distinct().order_by("sender__username"))
        return [(str(pk), username) for pk, username in senders]

    def queryset(self, request, queryset):
        return queryset.filter(sender_id=self.value()) if self.value() else queryset


def _reached_subquery():
    return Subquery(
        Delivery.objects.filter(notification=OuterRef("pk"), status__in=Delivery.REACHED_STATUSES)
        .order_by().values("notification").annotate(n=Count("recipient", distinct=True)).values("n"),
        output_field=IntegerField(),
    )


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("title", "status_badge", "reach", "category", "channel_list", "sender", "created_at")
    list_filter = ("status", "category", SenderFilter, ("created_at", DateFieldListFilter))
    search_fields = ("title", "=deliveries__recipient__username", "=deliveries__recipient__email")
    list_select_related = ("sender",)
    date_hierarchy = "created_at"
    actions = ("retry_failed", "cancel", "resend_unacknowledged")
    list_per_page = 50

    # --- scope ---------------------------------------------------------------------------
    def get_queryset(self, request):
        return notifications_visible_to(request.user).annotate(reached=Coalesce(_reached_subquery(), Value(0)))

    def has_delete_permission(self, request, obj=None):
        return False  # notifications are history; retention purges deliveries

    def get_object_or_404(self, request, object_id):
        try:
            return self.get_queryset(request).select_related("sender", "incident").get(pk=int(object_id))
        except (Notification.DoesNotExist, ValueError, TypeError):
            raise Http404("No such notification, or not one of yours.")

    # --- the changelist at a glance -------------------------------------------------------
    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        return format_html('<span class="fn-status fn-status-{}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description=_("reach"))
    def reach(self, obj):
        total = obj.recipient_count  # the audience, counted once when the fan-out started
        if not total:
            return "—"
        return format_html('<progress max="{}" value="{}"></progress> {}/{}', total, obj.reached, obj.reached, total)

    @admin.display(description=_("channels"))
    def channel_list(self, obj):
        labels = dict(Channel.choices)
        return ", ".join(str(labels.get(channel, channel)) for channel in obj.channels)

    # --- pages ----------------------------------------------------------------------------
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/progress.json", self.admin_site.admin_view(self.progress_view),
                 name="%s_%s_progress" % info),
            path("<path:object_id>/status.json", self.admin_site.admin_view(self.status_view),
                 name="%s_%s_status" % info),
            path("<path:object_id>/deliveries.csv", self.admin_site.admin_view(self.export_view),
                 name="%s_%s_export" % info),
            path("<path:object_id>/act/", self.admin_site.admin_view(self.act_view), name="%s_%s_act" % info),
            path("<path:object_id>/follow-up/", self.admin_site.admin_view(self.follow_up_view),
                 name="%s_%s_follow_up" % info),
            path("<path:object_id>/publish/", self.admin_site.admin_view(self.publish_view),
                 name="%s_%s_publish" % info),
        ] + super().get_urls()

    def progress_view(self, request, object_id):
        notification = self.get_object_or_404(request, object_id)
        return JsonResponse(notification_progress(notification))

    def status_view(self, request, object_id):
        """What the Watch page refreshes while the notification runs (static/console/watch.js polls it)."""
        return admin_watch.watch_status_response(self.get_object_or_404(request, object_id))

    def export_view(self, request, object_id):
        """Every delivery of the notification as CSV, with the reasons; streamed, formula-safe."""
        notification = self.get_object_or_404(request, object_id)
        return admin_watch.delivery_export_response(notification, delivery_export(notification))

    def act_view(self, request, object_id):
        """The Watch page's buttons: the list's actions on this one notification, then back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        notification = self.get_object_or_404(request, object_id)
        if request.POST.get("action") in ("approve", "refuse"):
            self.decide(request, notification, request.POST["action"])
            return redirect(reverse("admin:notifications_notification_change", args=[notification.pk]))
        if not self.has_change_permission(request, notification):
            raise PermissionDenied
        action = {"retry_failed": self.retry_failed, "cancel": self.cancel,
                  "resend_unacknowledged": self.resend_unacknowledged}.get(request.POST.get("action"))
        if action is None:
            self.message_user(request, gettext("Choose an action."), messages.WARNING)
        else:
            action(request, self.get_queryset(request).filter(pk=notification.pk))
        return redirect(reverse("admin:notifications_notification_change", args=[notification.pk]))

    def follow_up_view(self, request, object_id):
        """The Watch page's "Send an update" and "Send the all-clear" (emergency permission): to the sent one's
        page; a form with errors comes back on this page (400)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        notification = self.get_object_or_404(request, object_id)
        sent, forms = admin_watch.follow_up_submit(request, notification)
        if sent is not None:
            return redirect(reverse("admin:notifications_notification_change", args=[sent.pk]))
        if forms:
            response = self.change_view(request, object_id, follow_up_forms=forms)
            response.status_code = 400
            return response
        return redirect(reverse("admin:notifications_notification_change", args=[notification.pk]))

    def publish_view(self, request, object_id):
        """The Watch page's CAP toggle (emergency permission): the incident public, or not."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        notification = self.get_object_or_404(request, object_id)
        if not request.user.has_perm(admin_watch.EMERGENCY_PERMISSION):
            raise PermissionDenied
        admin_watch.publish_submit(request, notification)
        return redirect(reverse("admin:notifications_notification_change", args=[notification.pk]) + "#incident")

    def decide(self, request, notification, decision):
        """The two-person rule's second person, from the Watch page: approve (it is sent) or refuse (with a reason).
        The service refuses the drafter and whoever lacks the emergency permission."""
        try:
            if decision == "approve":
                services.notification_approve(notification, by=request.user)
                self.log_change(request, notification, "Approved (two-person rule): sent.")
                self.message_user(request, gettext("Approved: “%(title)s” is being sent.")
                                  % {"title": notification.title})
            else:
                services.notification_reject(notification, by=request.user, reason=request.POST.get("reason", ""))
                self.log_change(request, notification, "Refused (two-person rule): cancelled.")
                self.message_user(request, gettext("Refused: “%(title)s” will not be sent.")
                                  % {"title": notification.title})
        except PermissionDenied as exc:
            self.message_user(request, str(exc) or gettext("You may not do this."), messages.ERROR)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)

    def change_view(self, request, object_id, form_url="", extra_context=None, follow_up_forms=None):
        """A notification's page is the Watch page: nothing of a sent notification is edited by hand."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        notification = self.get_object_or_404(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "title": gettext("Watch: %(title)s") % {"title": notification.title},
            "notification": notification, "can_act": self.has_change_permission(request, notification),
            "has_view_permission": True, **admin_watch.watch_context(request, notification),
            **admin_watch.incident_context(request, notification, follow_up_forms),
            **ledger_watch_context(request, notification),
        }
        return TemplateResponse(request, "admin/notifications/notification/watch.html", context)

    def add_view(self, request, form_url="", extra_context=None):
        """Compose → confirm (what sending will do per channel, and why not; a preview) → send."""
        return compose_view(self, request)

    # --- actions --------------------------------------------------------------------------
    @admin.action(description=_("Retry failed deliveries"), permissions=["change"])
    def retry_failed(self, request, queryset):
        total = 0
        for notification in queryset:
            count = services.deliveries_retry(Delivery.objects.filter(notification=notification))
            if count:
                self.log_change(request, notification, f"Retried {count} failed deliveries.")
            total += count
        self.message_user(request, ngettext(
            "Queued %(count)d failed deliveries again, across %(notifications)d notification(s).",
            "Queued %(count)d failed deliveries again, across %(notifications)d notification(s).", total)
            % {"count": total, "notifications": len(queryset)})

    @admin.action(description=_("Cancel (scheduled or running)"), permissions=["change"])
    def cancel(self, request, queryset):
        done, refused = [], []
        for notification in queryset:
            try:
                count = services.notification_cancel(notification, by=request.user)
            except ValidationError as exc:
                refused.append(" ".join(exc.messages))
                continue
            self.log_change(request, notification, f"Cancelled; {count} pending deliveries cancelled.")
            done.append(gettext("%(id)s (%(count)d pending deliveries cancelled; any being sent stop within seconds)")
                        % {"id": notification.pk, "count": count})
        if done:
            self.message_user(request, gettext("Cancelled notification(s) %(list)s.") % {"list": ", ".join(done)})
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description=_("Resend to those who have not acknowledged"), permissions=["change"])
    def resend_unacknowledged(self, request, queryset):
        for notification in queryset:
            try:
                resent, count = services.notification_resend_unacknowledged(notification, by=request.user)
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, " ".join(getattr(exc, "messages", [str(exc)])), messages.WARNING)
                continue
            if resent is None:
                self.message_user(request, gettext("Notification %(id)s: everyone has acknowledged.")
                                  % {"id": notification.pk})
                continue
            self.log_change(request, notification, f"Resent to {count} recipients who had not acknowledged "
                                                   f"(notification {resent.pk}).")
            self.log_addition(request, resent, [{"added": {}}])
            self.message_user(request, gettext("Notification %(id)s: resent to %(count)d recipient(s) who had not "
                                               "acknowledged, as notification %(resent)s.")
                              % {"id": notification.pk, "count": count, "resent": resent.pk})


class PossibleDuplicateFilter(admin.SimpleListFilter):
    title = _("possible duplicate")
    parameter_name = "possible_duplicate"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        maybe = Q(reclaims__gt=0, send_count__gt=0)
        return {"yes": queryset.filter(maybe), "no": queryset.exclude(maybe)}.get(self.value(), queryset)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "notification", "recipient_link", "channel", "status", "reason_display", "attempts",
                    "sent_at", "possible_duplicate", "last_error")
    list_filter = ("channel", "status", "reason", PossibleDuplicateFilter)
    search_fields = ("=recipient__username", "=recipient__email", "=provider_message_id")
    list_select_related = ("notification", "recipient")
    raw_id_fields = ("notification", "recipient")
    change_form_template = "admin/notifications/delivery/change_form.html"
    # What a reader asks of one delivery first; the workers' bookkeeping is folded away, for Admin only.
    INTERNALS = ("claim_token", "claimed_at", "reclaims", "send_count", "enqueued_at", "next_attempt_at",
                 "provider_message_id", "digest", "created_at", "updated_at")

    @admin.display(boolean=True, description=_("possible duplicate"))
    def possible_duplicate(self, delivery):
        return delivery.possible_duplicate

    @admin.display(description=_("recipient"), ordering="recipient__username")
    def recipient_link(self, delivery):
        return format_html('<a href="{}">{}</a>', admin_watch.person_url(delivery.recipient_id),
                           admin_watch.person_name(delivery.recipient))

    @admin.display(description=_("notification"))
    def notification_link(self, delivery):
        return format_html('<a href="{}">{}</a>', reverse("admin:notifications_notification_change",
                                                          args=[delivery.notification_id]), delivery.notification.title)

    @admin.display(description=_("reason"), ordering="reason")
    def reason_display(self, delivery):
        return admin_watch.delivery_reason(delivery)

    @admin.display(description=_("escalation rung"))
    def rung(self, delivery):
        return delivery.escalation_level or gettext("first send")

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ("notification_link", "recipient_link", "channel", "rung", "status",
                                        "reason_display", "attempts", "sent_at", "delivered_at", "failed_at",
                                        "last_error")})]
        if is_console_admin(request):
            fieldsets.append((_("Internals"), {"classes": ("collapse",), "fields": self.INTERNALS}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return ("notification_link", "recipient_link", "channel", "rung", "status", "reason_display", "attempts",
                "sent_at", "delivered_at", "failed_at", "last_error") + self.INTERNALS

    def change_view(self, request, object_id, form_url="", extra_context=None):
        delivery = self.get_queryset(request).select_related("notification", "recipient").filter(
            pk=object_id if str(object_id).isdigit() else None).first()
        title = admin_watch.delivery_title(delivery) if delivery else None
        return super().change_view(request, object_id, form_url,
                                   {**(extra_context or {}), "title": title, "subtitle": None, "delivery_title": title}
                                   if title else extra_context)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if is_console_admin(request):
            return queryset
        return queryset.filter(notification__in=notifications_visible_to(request.user).values("pk"))


@admin.register(CategoryDefault)
class CategoryDefaultAdmin(admin.ModelAdmin):
    list_display = ("category", "channel", "enabled", "digest")
    list_editable = ("enabled", "digest")


@admin.register(PerformanceMetric)
class PerformanceMetricAdmin(ReadOnlyAdmin):
    list_display = ("recorded_at", "notifier", "channel", "operation", "items", "succeeded", "failed", "duration_ms")
    list_filter = ("notifier", "channel", "operation", "ok")


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("title", "recipient", "created_at", "read_at", "acknowledged_at")
    search_fields = ("title", "=recipient__username")
    list_select_related = ("recipient",)
    raw_id_fields = ("notification", "recipient")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if console_role(request.user) == "admin":
            return queryset
        return queryset.filter(notification__in=notifications_visible_to(request.user).values("pk"))


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    """Look and remove only: an endpoint is a bearer capability (staff see its host and a hash), and
    subscriptions come from browsers through push_subscription_save, which checks them."""

    list_display = ("user", "endpoint_summary", "created_at")
    search_fields = ("=user__username",)
    fields = ("user", "endpoint_summary", "user_agent", "created_at")
    readonly_fields = fields

    @admin.display(description="endpoint")
    def endpoint_summary(self, subscription):
        return subscription.endpoint_summary

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


admin.site.register_page("health/", health_index, name="health")
admin.site.register_page("people/", admin_watch.people_view, name="people")
admin.site.register_page("people/<int:user_id>/", admin_watch.person_view, name="person")
admin.site.register_page("health/<str:channel>/", health_channel, name="health_channel")
admin.site.register_page("drills/", admin_watch.drills_view, name="drills")
