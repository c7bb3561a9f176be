import datetime
import hashlib
import json

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from channels_app.constants import Category, Channel, Priority


class NotificationQuerySet(models.QuerySet):
    def family_of(self, notification):
        """`notification`'s family: the first of its `parent` chain and every resend and reminder under it."""
        root = notification.family_root_id or notification.pk
        return self.filter(models.Q(pk=root) | models.Q(family_root_id=root))


class Notification(models.Model):
    """What was sent, by whom, to which audience. Its deliveries say what happened."""

    objects = NotificationQuerySet.as_manager()

    class Status(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
        SCHEDULED = "scheduled", _("Scheduled")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        PARTIALLY_FAILED = "partially_failed", _("Partially failed")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    FINAL_STATUSES = (Status.SENT, Status.PARTIALLY_FAILED, Status.FAILED, Status.CANCELLED)

    class AlertStatus(models.TextChoices):
        """The Common Alerting Protocol's status: an exercise is labelled on every channel, a test goes only
        to the test list (settings.EMERGENCY_TEST_COHORT)."""

        ACTUAL = "actual", _("Actual")
        EXERCISE = "exercise", _("Exercise")
        TEST = "test", _("Test")

    class ThreadRole(models.TextChoices):
        """Its place in an incident thread (CAP msgType Alert, Update, Cancel)."""

        ALERT = "alert", _("Alert")
        UPDATE = "update", _("Update")
        ALL_CLEAR = "all_clear", _("All clear")

    notifier = models.CharField(_("notifier"), max_length=50)
    category = models.CharField(_("category"), max_length=20, choices=Category.choices)
    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"))
    translations = models.JSONField(
        _("translations"), default=dict, blank=True,
        help_text=_("The title and body in other languages, {\"fr\": {\"title\": …, \"body\": …}}: each recipient "
                    "gets the version of their language, and the English title and body when there is none."))
    data = models.JSONField(_("data"), default=dict, blank=True,
                            help_text=_("Extra template context, e.g. course, severity, location."))
    channels = models.JSONField(_("channels"), default=list)
    audience = models.JSONField(_("audience"), default=dict,
                                help_text=_("As asked for: users, cohorts, roles, everyone."))
    cohorts = models.ManyToManyField("accounts.Cohort", blank=True, related_name="notifications",
                                     help_text=_("The cohorts in its audience, for scoping staff access."))
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="sent_notifications", verbose_name=_("sender"))
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    request_fingerprint = models.CharField(max_length=64, blank=True,
                                           help_text=_("Hash of what was asked, to tell a replay from a conflict."))
    scheduled_for = models.DateTimeField(_("scheduled for"), null=True, blank=True, db_index=True)
    deadline = models.DateTimeField(_("deadline"), null=True, blank=True)
    reminder_offsets = models.JSONField(_("reminder offsets (minutes)"), default=list, blank=True)
    fanout_cursor = models.BigIntegerField(default=0, help_text=_("Last recipient id fanned out; fan-out resumes after it."))
    requires_ack = models.BooleanField(_("requires acknowledgement"), default=False)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="reminders",
                               help_text=_("The notification this one reminds of."))
    family_root = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text=_("The first notification of its `parent` chain (empty for that first one): an acknowledgement "
                    "of any notification of the family counts for all of them."))
    recipient_count = models.PositiveIntegerField(default=0)
    # Emergency alerting (issue 17). An emergency alert is a notification of the security notifier.
    alert_status = models.CharField(_("alert status"), max_length=10, choices=AlertStatus.choices,
                                    default=AlertStatus.ACTUAL)
    incident = models.ForeignKey("Incident", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="notifications", verbose_name=_("incident"))
    thread_role = models.CharField(_("place in the incident"), max_length=10, choices=ThreadRole.choices,
                                   blank=True)
    template = models.ForeignKey("IncidentTemplate", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="notifications", verbose_name=_("incident template"))
    template_version = models.PositiveIntegerField(_("template version"), null=True, blank=True)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="approved_notifications", verbose_name=_("approved by"))
    approved_at = models.DateTimeField(_("approved at"), null=True, blank=True)
    refused_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="refused_notifications", verbose_name=_("refused by"))
    refusal_reason = models.TextField(_("reason for refusing"), blank=True,
                                      help_text=_("Why the second person refused to approve the alert."))
    escalation_delay_minutes = models.PositiveIntegerField(
        _("escalation delay (minutes)"), null=True, blank=True,
        help_text=_("Empty: the kind of message's delay."))
    escalation_ladder = models.JSONField(
        _("escalation ladder"), default=list, blank=True,
        help_text=_("The channels, in order, to escalate on; empty: the kind of message's ladder."))
    checkin = models.BooleanField(
        _("asks for a check-in"), default=False,
        help_text=_("The SMS asks to reply 1 if safe, 2 if help is needed; replies are the roll call."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["sender", "-created_at"], name="notification_sender_recent"),
            models.Index(fields=["category", "-created_at"], name="notification_category_recent"),
        ]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        permissions = [("send_emergency", _("Can send and approve emergency alerts"))]

    def __str__(self):
        return self.title

    EMERGENCY_NOTIFIER = "security"
    # (title prefix, first line of the body) of an alert that is not real, in every language (content_for).
    ALERT_LABELS = {
        AlertStatus.EXERCISE: (_("EXERCISE"), _("EXERCISE — this is a drill.")),
        AlertStatus.TEST: (_("TEST"), _("TEST — this is a test of the alert system; no action is needed.")),
    }

    @property
    def is_emergency(self):
        """An emergency alert: the security notifier's. The ledger, the two-person rule and CAP concern these."""
        return self.notifier == self.EMERGENCY_NOTIFIER

    @property
    def is_final(self):
        return self.status in self.FINAL_STATUSES

    def content_for(self, language):
        """(title, body) for a recipient who reads `language`: its translation, else the English title and body.

        The one place that chooses a recipient's content: every channel, the inbox and the digest render it.
        """
        version = (self.translations or {}).get(language) or {}
        if version.get("title") and version.get("body"):
            title, body = version["title"], version["body"]
        else:
            title, body = self.title, self.body
        label = self.ALERT_LABELS.get(self.alert_status)
        if label:  # an exercise or a test says so first, on every channel, in the recipient's language
            with translation.override(language):
                title, body = f"{label[0]} — {title}", f"{label[1]}\n\n{body}"
        return title, body

    def child_family_root(self):
        """The `family_root` of a notification whose `parent` is this one."""
        return self.family_root_id or self.pk


class Delivery(models.Model):
    """One recipient × one channel: the record of what happened to that message."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        RETRYING = "retrying", _("Retrying")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")
        CANCELLED = "cancelled", _("Cancelled")

    class Reason(models.TextChoices):
        """Why a delivery was not made (skipped, cancelled) or not yet (held): "why didn't X get it?"."""

        OPTED_OUT = "opted_out", _("Opted out")
        DEFAULT_OFF = "default_off", _("Category default off")
        NO_ADDRESS = "no_address", _("No email address")
        PHONE_NOT_VERIFIED = "phone_not_verified", _("Phone not verified")
        NO_PUSH_SUBSCRIPTION = "no_push_subscription", _("No push subscription")
        ACCOUNT_INACTIVE = "account_inactive", _("Account inactive")
        SUPPRESSED = "suppressed", _("Suppressed after a bounce or complaint")
        QUIET_HOURS = "quiet_hours", _("Held for quiet hours")
        DIGEST = "digest", _("Held for the daily digest")
        CANCELLED = "cancelled", _("Cancelled")
        SMS_STOPPED = "sms_stopped", _("Replied STOP to text messages")

    PENDING_STATUSES = (Status.QUEUED, Status.SENDING, Status.RETRYING)
    REACHED_STATUSES = (Status.SENT, Status.DELIVERED)
    # Rows that stand for a delivery not made, whose reason the console counts.
    NOT_MADE_STATUSES = (Status.SKIPPED, Status.CANCELLED)

    # No index of their own: the unique constraint and the indexes below start with them (an index fewer to
    # keep up on every write of a delivery).
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries",
                                     db_index=False)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deliveries",
                                  db_index=False)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    send_count = models.PositiveSmallIntegerField(
        _("sends"), default=0,
        help_text=_("Times the provider accepted it; more than one records a duplicate after a worker died."),
    )
    provider_message_id = models.CharField(_("provider message id"), max_length=200, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices, blank=True,
                              help_text=_("Why it was not made, or not yet (held); see reason_text."))
    skip_reason = models.CharField(_("skip reason"), max_length=200, blank=True,
                                   help_text=_("The reason in words, with its details (e.g. until when it is held)."))
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    enqueued_at = models.DateTimeField(null=True, blank=True,
                                       help_text=_("When it was last handed to the workers' queue."))
    reclaims = models.PositiveSmallIntegerField(
        _("reclaims"), default=0,
        help_text=_("Times taken back from a worker that died while sending: each may have sent a duplicate."),
    )
    digest = models.BooleanField(_("in digest"), default=False,
                                 help_text=_("Held for the recipient's daily digest email."))
    escalation_level = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Once per channel, and again per escalation level (notifications.engine.escalation).
            models.UniqueConstraint(fields=["notification", "recipient", "channel", "escalation_level"],
                                    name="delivery_once_per_channel_level"),
        ]
        indexes = [
            models.Index(fields=["notification", "channel", "status"], name="delivery_progress"),
            # "Is anything of this notification still pending?" after every batch: a range lookup, not a scan.
            models.Index(fields=["notification", "status"], name="delivery_notification_status"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["claim_token"], name="delivery_claim"),
            models.Index(fields=["recipient", "-created_at"], name="delivery_recipient_recent"),
            models.Index(fields=["provider_message_id"], name="delivery_provider_id"),
        ]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")

    def __str__(self):
        return f"#{self.pk} {self.channel} → {self.recipient_id}: {self.status}"

    @property
    def possible_duplicate(self):
        """It was sent, and a worker also stopped while holding it: it may have reached its recipient twice."""
        return self.reclaims > 0 and self.send_count > 0

    @property
    def reason_code(self):
        """The reason, or `cancelled` for a row cancelled without one (by the engine, or before reasons)."""
        if not self.reason and self.status == self.Status.CANCELLED:
            return self.Reason.CANCELLED
        return self.reason

    @property
    def reason_text(self):
        """The reason as a staff member reads it, with its details; rows older than reasons keep their text."""
        return reason_text(self.reason_code, self.skip_reason)

    @staticmethod
    def message_id_domain():
        return settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(">") or "flashnotify.localhost"

    @property
    def message_id(self):
        """The RFC 5322 Message-ID of this delivery's email: stable, so providers can deduplicate."""
        return f"<delivery-{self.pk}.notification-{self.notification_id}@{self.message_id_domain()}>"

    @classmethod
    def message_id_sql(cls):
        """`message_id` as an SQL expression: rows sent under their own Message-ID record it in one UPDATE.
        (`||` joins text and numbers alike in SQLite and PostgreSQL, and costs nothing to compile.)"""
        return RawSQL("""'<delivery-' || "id" || '.notification-' || "notification_id" || %s""",
                      [f"@{cls.message_id_domain()}>"], output_field=models.CharField())


def reason_text(code, detail=""):
    """The sentence the engine wrote (e.g. "held for quiet hours until 2026-01-16 06:00 UTC"), else the
    reason's label ("Opted out"); rows from before reasons keep their free text."""
    if detail or not code:
        return detail
    return str(Delivery.Reason(code).label)


class InboxMessageQuerySet(models.QuerySet):
    def of_family(self, notification):
        """Messages of any notification of `notification`'s family (Notification.objects.family_of)."""
        return self.filter(notification__in=Notification.objects.family_of(notification).values("pk"))

    def acknowledged(self):
        return self.filter(acknowledged_at__isnull=False)


class InboxMessage(models.Model):
    """The in-app record of a notification for one recipient (written by the inbox channel, ArchiveMixin)."""

    objects = InboxMessageQuerySet.as_manager()

    # No index of their own: the unique constraint and the indexes below start with them.
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="inbox_messages",
                                     db_index=False)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inbox_messages",
                                  db_index=False)
    title = models.CharField(max_length=200)
    body = models.TextField()
    category = models.CharField(max_length=20, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "channels_app_inboxmessage"  # created by channels_app before the model moved here
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["notification", "recipient"], name="inbox_one_per_recipient"),
        ]
        indexes = [
            models.Index(fields=["recipient", "-created_at"], name="inbox_recipient_recent"),
            models.Index(fields=["recipient", "read_at"], name="inbox_recipient_unread"),
        ]
        verbose_name = _("inbox message")
        verbose_name_plural = _("inbox messages")

    def __str__(self):
        return self.title


class FanoutPage(models.Model):
    """One page of a notification's audience — recipients with after_pk < id <= last_pk — planned by one task.

    Pages let several workers plan one fan-out at once; a page whose task was lost is
    handed out again by the sweep, and planning it twice is a no-op (`planned_at`).
    """

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="fanout_pages")
    after_pk = models.BigIntegerField()
    last_pk = models.BigIntegerField()
    size = models.PositiveIntegerField()
    is_last = models.BooleanField(default=False, help_text=_("The audience ends with this page."))
    enqueued_at = models.DateTimeField()
    planned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notification", "after_pk"], name="fanout_page_once")]
        indexes = [models.Index(fields=["planned_at", "enqueued_at"], name="fanout_page_pending")]

    def __str__(self):
        return f"notification {self.notification_id} recipients ({self.after_pk}, {self.last_pk}]"


class CategoryDefault(models.Model):
    """Whether a category goes out on a channel for users who have not chosen (set by an administrator)."""

    category = models.CharField(max_length=20, choices=Category.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    enabled = models.BooleanField(default=True)
    digest = models.BooleanField(default=False, help_text=_("Gather low-priority messages into a daily email."))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["category", "channel"], name="category_default_once")]
        verbose_name = _("category default")
        verbose_name_plural = _("category defaults")

    def __str__(self):
        return f"{self.category} / {self.channel}: {'on' if self.enabled else 'off'}"


class Preference(models.Model):
    """One user's choice for a category on a channel."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    category = models.CharField(max_length=20, choices=Category.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    enabled = models.BooleanField(default=True)
    digest = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "category", "channel"], name="preference_once")]
        verbose_name = _("preference")
        verbose_name_plural = _("preferences")

    def __str__(self):
        return f"{self.user_id} {self.category}/{self.channel}: {'on' if self.enabled else 'off'}"


class RecipientContext(models.Model):
    """Per-recipient template context of a notification (a personalised batch, one row per recipient).

    Kept beside the deliveries rather than on them, so the fan-out plans deliveries as for any
    notification; the engine merges it into the context when rendering each message.
    """

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="recipient_contexts")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    context = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["notification", "recipient"], name="recipient_context_once"),
        ]
        verbose_name = _("recipient context")
        verbose_name_plural = _("recipient contexts")

    def __str__(self):
        return f"{self.notification_id} → {self.recipient_id}"


class IncidentTemplate(models.Model):
    """An Admin-maintained emergency message, sent by Staff with the emergency permission in a few steps.

    `title`, `body` and `translations` may hold {variables} (declared in `variables`). Every change
    of content raises `version`; a notification sent from it records the version it used.
    """

    class Kind(models.TextChoices):
        ACTIVE_THREAT = "active_threat", _("Active threat / shelter in place")
        SEVERE_WEATHER = "severe_weather", _("Severe weather")
        FIRE_EVACUATION = "fire_evacuation", _("Fire or evacuation")
        CAMPUS_CLOSURE = "campus_closure", _("Campus closure")
        UTILITY_OUTAGE = "utility_outage", _("Utility outage")
        ALL_CLEAR = "all_clear", _("All clear")
        OTHER = "other", _("Other")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    version = models.PositiveIntegerField(_("version"), default=1, editable=False)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"))
    translations = models.JSONField(_("translations"), default=dict, blank=True)
    variables = models.JSONField(
        _("variables"), default=list, blank=True,
        help_text=_("The {names} the title and body use, e.g. [\"building\", \"time\", \"instructions\"]."))
    severity = models.CharField(_("severity"), max_length=10, default="high")
    channels = models.JSONField(_("channels"), default=list, blank=True)
    audience = models.JSONField(_("audience"), default=dict, blank=True)
    escalation_delay_minutes = models.PositiveIntegerField(_("escalation delay (minutes)"), null=True, blank=True)
    escalation_ladder = models.JSONField(_("escalation ladder"), default=list, blank=True)
    checkin = models.BooleanField(_("asks for a check-in"), default=False)
    active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("incident template")
        verbose_name_plural = _("incident templates")

    def __str__(self):
        return f"{self.name} (v{self.version})"


class IncidentTemplateVersion(models.Model):
    """One saved version of an incident template's content, so "which version did this alert use" has an answer.

    Written by `incident_template_save` (notifications.services.templates) whenever the content changes.
    """

    template = models.ForeignKey(IncidentTemplate, on_delete=models.CASCADE, related_name="versions",
                                 verbose_name=_("incident template"))
    version = models.PositiveIntegerField(_("version"))
    content = models.JSONField(_("content"), default=dict)
    saved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", verbose_name=_("saved by"))
    saved_at = models.DateTimeField(_("saved at"), default=timezone.now)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [models.UniqueConstraint(fields=["template", "version"], name="incident_template_version")]
        verbose_name = _("incident template version")
        verbose_name_plural = _("incident template versions")

    def __str__(self):
        return f"{self.template_id} v{self.version}"


class Incident(models.Model):
    """An emergency and its thread: the first alert, its updates, and the all-clear that closes it."""

    title = models.CharField(_("title"), max_length=200)
    alert_status = models.CharField(_("alert status"), max_length=10, choices=Notification.AlertStatus.choices,
                                    default=Notification.AlertStatus.ACTUAL)
    public = models.BooleanField(_("public"), default=False,
                                 help_text=_("Published in the CAP feed to anyone, without signing in."))
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", verbose_name=_("opened by"))
    opened_at = models.DateTimeField(_("opened at"), auto_now_add=True)
    closed_at = models.DateTimeField(_("all clear at"), null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        verbose_name = _("incident")
        verbose_name_plural = _("incidents")

    def __str__(self):
        return self.title


class SmsReply(models.Model):
    """A text message received from someone (Twilio's inbound webhook): a check-in answer or a keyword."""

    class Kind(models.TextChoices):
        SAFE = "safe", _("Safe")
        NEED_HELP = "need_help", _("Needs help")
        OTHER = "other", _("Other reply")
        STOP = "stop", _("STOP")
        START = "start", _("START")
        HELP = "help", _("HELP")

    message_sid = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(_("from"), max_length=32)
    to_number = models.CharField(_("to"), max_length=32, blank=True)
    body = models.TextField(_("text"), blank=True)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    notification = models.ForeignKey(Notification, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="sms_replies", verbose_name=_("alert"),
                                     help_text=_("The alert it answers; empty when it matched none (unmatched)."))
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="sms_replies", verbose_name=_("person"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["notification", "recipient"], name="sms_reply_roll_call")]
        verbose_name = _("text message received")
        verbose_name_plural = _("text messages received")

    def __str__(self):
        return f"{self.from_number}: {self.kind}"


# The PostgreSQL advisory lock that serialises writers of the ledger's chain (any fixed 64-bit number).
LEDGER_LOCK_KEY = 7_170_017_009


class LedgerEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionDenied("The compliance ledger is append-only.")

    def delete(self):
        raise PermissionDenied("The compliance ledger is append-only.")

    def expired_delete(self, before):
        """The one way entries leave: the retention job, for entries older than the retention period."""
        return models.QuerySet.delete(self.filter(at__lt=before))


class LedgerEntry(models.Model):
    """The compliance ledger of emergency alerts: append-only, one chained entry per event.

    Not a foreign key to the notification: the record outlives it (LEDGER_RETENTION_YEARS, at least 7).
    `actor` keeps the person's name as it was. Each entry's `digest` covers the previous entry's, so
    an edit made outside the application breaks the chain (`LedgerEntry.verify_chain`).
    Record with `LedgerEntry.record(...)`, from services and engine alike.
    """

    class Event(models.TextChoices):
        DRAFTED = "drafted", _("Drafted")
        APPROVAL_REFUSED = "approval_refused", _("Approval refused")
        APPROVED = "approved", _("Approved")
        SENT = "sent", _("Sent")
        CONTENT = "content", _("Content version")
        UPDATE = "update", _("Update sent")
        ALL_CLEAR = "all_clear", _("All clear sent")
        CANCELLED = "cancelled", _("Cancelled")
        COMPLETED = "completed", _("Handed to providers: counts")
        CHECKIN = "checkin", _("Check-in tally")
        PUBLISHED = "published", _("Published in the CAP feed")

    notification_id = models.BigIntegerField(_("notification"), db_index=True)
    incident_id = models.BigIntegerField(_("incident"), null=True, blank=True, db_index=True)
    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    event = models.CharField(_("event"), max_length=20, choices=Event.choices)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(_("by"), max_length=300, blank=True)
    data = models.JSONField(_("details"), default=dict, blank=True)
    previous_digest = models.CharField(max_length=64, blank=True)
    digest = models.CharField(max_length=64, unique=True)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name = _("ledger entry")
        verbose_name_plural = _("compliance ledger")

    def __str__(self):
        return f"{self.notification_id} {self.get_event_display()} {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs):
        if self.pk is not None or not self._state.adding:
            raise PermissionDenied("The compliance ledger is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("The compliance ledger is append-only.")

    def compute_digest(self):
        payload = json.dumps([self.previous_digest, self.notification_id, self.incident_id, self.at.isoformat(),
                              self.event, self.actor_id, self.actor, self.data], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    @classmethod
    def record(cls, notification, event, *, actor=None, data=None, at=None):
        """Append one entry for `notification` (a Notification) about `event` (LedgerEntry.Event).

        Only emergency alerts have a ledger: for any other notification this records nothing (returns None).
        """
        if not notification.is_emergency:
            return None
        name = ""
        if actor is not None:
            name = f"{actor.get_full_name() or actor.get_username()} ({actor.get_username()})"
        with transaction.atomic():
            # One writer at a time extends the chain. On PostgreSQL a lock on the last row is not enough (a
            # second writer waiting on it gets that same row back, and the chain forks): a transaction-wide
            # advisory lock serialises writers. SQLite serialises writers itself (IMMEDIATE transactions).
            connection = transaction.get_connection()
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_KEY])
            last = cls.objects.order_by("-id").only("digest").first()
            # In UTC, as the database gives it back: the digest covers `at` written out.
            at = (at or timezone.now()).astimezone(datetime.timezone.utc)
            entry = cls(notification_id=notification.pk, incident_id=notification.incident_id, event=event,
                        actor_id=getattr(actor, "pk", None), actor=name, data=data or {},
                        at=at, previous_digest=last.digest if last else "")
            entry.digest = entry.compute_digest()
            entry.save()
        return entry

    @classmethod
    def verify_chain(cls, entries=None):
        """The first entry (in id order) whose digest or link does not hold, or None when the chain is whole."""
        previous = None
        for entry in (entries if entries is not None else cls.objects.order_by("id").iterator()):
            if entry.digest != entry.compute_digest() or (
                    previous is not None and entry.previous_digest != previous.digest):
                return entry
            previous = entry
        return None
