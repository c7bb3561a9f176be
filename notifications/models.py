from django.conf import settings
from django.db import models
from django.db.models.expressions import RawSQL
from django.utils import timezone
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
        SCHEDULED = "scheduled", _("Scheduled")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        PARTIALLY_FAILED = "partially_failed", _("Partially failed")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    FINAL_STATUSES = (Status.SENT, Status.PARTIALLY_FAILED, Status.FAILED, Status.CANCELLED)

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

    def __str__(self):
        return self.title

    @property
    def is_final(self):
        return self.status in self.FINAL_STATUSES

    def content_for(self, language):
        """(title, body) for a recipient who reads `language`: its translation, else the English title and body.

        The one place that chooses a recipient's content: every channel, the inbox and the digest render it.
        """
        version = (self.translations or {}).get(language) or {}
        if version.get("title") and version.get("body"):
            return version["title"], version["body"]
        return self.title, self.body

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

    PENDING_STATUSES = (Status.QUEUED, Status.SENDING, Status.RETRYING)
    REACHED_STATUSES = (Status.SENT, Status.DELIVERED)
    # Rows that stand for a delivery not made, whose reason the console counts.
    NOT_MADE_STATUSES = (Status.SKIPPED, Status.CANCELLED)

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deliveries")
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

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="inbox_messages")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inbox_messages")
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
