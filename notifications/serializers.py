import json
import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from rest_framework import serializers

from accounts.models import Role
from channels_app.constants import MANDATORY_CATEGORIES, Category, Channel, Priority
from channels_app.models import PushSubscription
from channels_app.registry import notifier_choices

from .models import Delivery, InboxMessage, Notification
from .selectors import delivery_counts
from .services import notification_validate


MAX_DATA_BYTES = 16_384


def _no_nul(value, path="data"):
    """PostgreSQL cannot store NUL characters in text or JSON: refuse them with a clear error."""
    if isinstance(value, str) and "\x00" in value:
        raise serializers.ValidationError(_("%(path)s contains a NUL character.") % {"path": path})
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key, path)
            _no_nul(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_nul(item, f"{path}.{index}")


class AudienceSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField(max_length=150), required=False, max_length=10_000,
                                 help_text="Usernames (student or staff numbers).")
    cohorts = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=1000,
                                   help_text="Cohort codes.")
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices), required=False,
                                  help_text="Administrators only.")
    everyone = serializers.BooleanField(required=False, default=False, help_text="Administrators only.")


class TranslationSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, trim_whitespace=False)
    body = serializers.CharField(max_length=20_000, required=False, allow_blank=True, trim_whitespace=False)


class NotificationCreateSerializer(serializers.Serializer):
    notifier = serializers.ChoiceField(choices=notifier_choices())
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(max_length=20_000)
    translations = serializers.DictField(
        child=TranslationSerializer(), required=False, default=dict,
        help_text='The title and body in other languages, e.g. {"fr": {"title": "…", "body": "…"}}: each recipient '
                  "gets the version of their language (User.language), the English title and body when there is none.")
    category = serializers.ChoiceField(choices=Category.choices, required=False,
                                       help_text="Defaults to the notifier's first category.")
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices), required=False,
                                     help_text="Defaults to every channel of the notifier.")
    audience = AudienceSerializer()
    scheduled_for = serializers.DateTimeField(required=False, allow_null=True)
    deadline = serializers.DateTimeField(required=False, allow_null=True)
    reminder_offsets = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=525_600),
                                             required=False, max_length=10,
                                             help_text="Minutes before the deadline at which to remind.")
    requires_ack = serializers.BooleanField(required=False, default=False)
    checkin = serializers.BooleanField(
        required=False, default=False,
        help_text='Emergency alerts (notifier "security") sent on SMS: the text message asks "Reply 1 if you are '
                  'safe, 2 if you need help."; the answers are the roll call (roll-call/).')
    data = serializers.DictField(required=False, default=dict,
                                 help_text="Extra template context, e.g. course, severity, location.")
    alert_status = serializers.ChoiceField(
        choices=Notification.AlertStatus.choices, default=Notification.AlertStatus.ACTUAL,
        help_text="CAP status of an emergency alert: an exercise is labelled EXERCISE on every channel; a test goes "
                  "only to the test list (EMERGENCY_TEST_COHORT), whatever the audience. Others: actual only.")
    escalation_delay_minutes = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="Minutes to wait for an acknowledgement before escalating (within ESCALATION_DELAY_MIN_MINUTES "
                  "and ESCALATION_DELAY_MAX_MINUTES); empty: the kind of message's delay.")
    escalation_ladder = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False, max_length=len(Channel.choices),
        help_text="Channels to escalate on, in order, among those it is sent on; the first send is the first rung. "
                  "Empty: the kind of message's ladder.")

    def validate_data(self, value):
        _no_nul(value)
        if len(json.dumps(value, default=str)) > MAX_DATA_BYTES:
            raise serializers.ValidationError(_("data is larger than %(bytes)d bytes.") % {"bytes": MAX_DATA_BYTES})
        return value

    def validate(self, attrs):
        """The send's own validation (notification_validate), so the API refuses what sending would."""
        try:
            notification_validate(**attrs)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(self.errors_as_fields(exc.message_dict)) from exc
        return attrs

    @staticmethod
    def errors_as_fields(errors):
        """The service's `title_fr` / `body_fr` errors where the request put them: translations.fr.title / .body."""
        fields = {}
        for field, messages in errors.items():
            version = re.fullmatch(r"(title|body)_([a-z]{2})", field)
            if version:
                fields.setdefault("translations", {}).setdefault(version[2], {})[version[1]] = messages
            else:
                fields[field] = messages
        return fields


class NotificationSerializer(serializers.ModelSerializer):
    sender = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "notifier", "category", "priority", "title", "status", "channels", "audience", "sender",
                  "scheduled_for", "deadline", "requires_ack", "recipient_count", "parent", "created_at",
                  "completed_at", "alert_status"]
        read_only_fields = fields


class NotificationDetailSerializer(NotificationSerializer):
    delivery_counts = serializers.SerializerMethodField(
        help_text="Deliveries per channel and status: {channel: {status: count}}.")

    class Meta(NotificationSerializer.Meta):
        fields = NotificationSerializer.Meta.fields + ["body", "translations", "data", "reminder_offsets",
                                                        "delivery_counts", "escalation_delay_minutes",
                                                        "escalation_ladder", "approved_by", "approved_at",
                                                        "refused_by", "refusal_reason"]
        read_only_fields = fields

    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                               help_text="The second person who approved an emergency alert.")
    refused_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True,
                                              help_text="The second person who refused it (then cancelled).")

    def get_delivery_counts(self, notification) -> dict[str, dict[str, int]]:

        if self.context.get("just_created"):
            return {}  # fan-out has not started: no deliveries yet, no query needed
        return delivery_counts(notification)


class DeliverySerializer(serializers.ModelSerializer):
    recipient = serializers.SlugRelatedField(slug_field="username", read_only=True)
    possible_duplicate = serializers.BooleanField(
        read_only=True, help_text="Sent, and a worker also stopped while holding it: it may have arrived twice.")

    class Meta:
        model = Delivery
        fields = ["id", "recipient", "channel", "status", "reason", "reason_text", "attempts", "send_count",
                  "last_error", "skip_reason", "next_attempt_at", "created_at", "sent_at", "delivered_at", "failed_at",
                  "reclaims", "possible_duplicate"]
        read_only_fields = fields

    reason = serializers.ChoiceField(
        source="reason_code", choices=Delivery.Reason.choices, allow_blank=True, read_only=True,
        help_text="Why it was not made (skipped, cancelled) or not yet (held); empty otherwise.")
    reason_text = serializers.CharField(read_only=True, help_text="The reason as a person reads it, with details.")


class ExplainQuerySerializer(serializers.Serializer):
    recipient = serializers.CharField(max_length=150, help_text="Username of the recipient to explain.")


class ChannelStateSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    escalation_level = serializers.IntegerField(help_text="0: the first send; k: the k-th escalation rung.")
    status = serializers.ChoiceField(choices=[*Delivery.Status.choices, ("pending", "Pending")],
                                     help_text="The delivery's status; `pending` when none is recorded yet.")
    reason = serializers.ChoiceField(choices=Delivery.Reason.choices, allow_blank=True)
    reason_text = serializers.CharField()
    delivery = serializers.IntegerField(allow_null=True, help_text="The delivery's id, if one is recorded.")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When a pending delivery is due.")
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)


class RecipientExplanationSerializer(serializers.Serializer):
    notification = serializers.IntegerField()
    recipient = serializers.CharField()
    reached = serializers.BooleanField(help_text="Sent or delivered on at least one channel.")
    channels = ChannelStateSerializer(many=True)


class PreviewSerializer(serializers.Serializer):
    recipient = serializers.CharField(max_length=150, required=False,
                                      help_text="Username of a recipient in the audience; you by default.")


class InboxMessageSerializer(serializers.ModelSerializer):
    requires_ack = serializers.BooleanField(source="notification.requires_ack", read_only=True)
    priority = serializers.CharField(source="notification.priority", read_only=True)
    incident = serializers.IntegerField(
        source="notification.incident_id", read_only=True, allow_null=True,
        help_text="The incident of an emergency alert: its alert, updates and all-clear share it.")
    thread_role = serializers.ChoiceField(
        source="notification.thread_role", read_only=True, choices=Notification.ThreadRole.choices,
        allow_blank=True, help_text="alert, update or all_clear in the incident's thread; empty outside one.")

    class Meta:
        model = InboxMessage
        fields = ["id", "notification", "title", "body", "category", "priority", "requires_ack", "created_at",
                  "read_at", "acknowledged_at", "incident", "thread_role"]
        read_only_fields = fields


class PreferenceSerializer(serializers.Serializer):
    category = serializers.ChoiceField(choices=Category.choices)
    channel = serializers.ChoiceField(choices=Channel.choices)
    enabled = serializers.BooleanField()
    digest = serializers.BooleanField(required=False)
    mandatory = serializers.BooleanField(read_only=True, help_text="Cannot be turned off.")

    def validate(self, attrs):
        if attrs["category"] in MANDATORY_CATEGORIES and not attrs["enabled"]:
            raise serializers.ValidationError({"enabled": [f"{attrs['category']} notifications cannot be turned off."]})
        return attrs


class PreferencesSerializer(serializers.Serializer):
    preferences = PreferenceSerializer(many=True)

    def validate_preferences(self, value):
        pairs = [(p["category"], p["channel"]) for p in value]
        if len(pairs) != len(set(pairs)):
            raise serializers.ValidationError(_("Each category and channel may appear once."))
        return value


class PushSubscriptionKeysSerializer(serializers.Serializer):
    p256dh = serializers.CharField(max_length=200)
    auth = serializers.CharField(max_length=100)


class PushSubscriptionSerializer(serializers.Serializer):
    endpoint = serializers.URLField(max_length=1000)
    keys = PushSubscriptionKeysSerializer()
    user_agent = serializers.CharField(max_length=300, required=False, allow_blank=True)


class PushSubscriptionOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = PushSubscription
        fields = ["id", "endpoint", "user_agent", "created_at"]


class MetricsQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Default: 24 hours before `until`.")
    until = serializers.DateTimeField(required=False, help_text="Default: now.")


class LatencySerializer(serializers.Serializer):
    count = serializers.IntegerField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)


class BreakerSerializer(serializers.Serializer):
    provider = serializers.CharField()
    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])
    failures = serializers.IntegerField()
    opened_at = serializers.FloatField(allow_null=True)


class MetricsSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    deliveries = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()),
                                       help_text="{channel: {status: count}} of deliveries created in the period.")
    latency = serializers.DictField(child=LatencySerializer(),
                                    help_text="Per channel: time from acceptance to the provider's acceptance.")
    breakers = BreakerSerializer(many=True)


class RollCallPersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField()
    phone = serializers.CharField(required=False, help_text="Only for those who need help.")
    answer = serializers.CharField(required=False, help_text="Their latest answer, as they typed it.")
    answered_at = serializers.DateTimeField(required=False)


class RollCallGroupSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    people = RollCallPersonSerializer(many=True, help_text="Up to 500 people, by name.")


class RollCallSerializer(serializers.Serializer):
    checkin = serializers.BooleanField(help_text="Whether the alert asked for a check-in.")
    recipients = serializers.IntegerField(help_text="People the alert reached, and anyone who answered it.")
    need_help = RollCallGroupSerializer()
    safe = RollCallGroupSerializer()
    other = RollCallGroupSerializer(help_text="Answered something else than 1 or 2.")
    no_answer = RollCallGroupSerializer()


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, help_text="Why it is refused: the person who drafted it reads it.")


class DrillsQuerySerializer(serializers.Serializer):
    year = serializers.IntegerField(min_value=2000, max_value=9999, help_text="Calendar year (UTC), e.g. 2026.")


class DrillSerializer(serializers.ModelSerializer):
    sender = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    reached = serializers.IntegerField(read_only=True, help_text="People sent or delivered to.")
    acknowledged = serializers.IntegerField(read_only=True, help_text="People who acknowledged it.")

    class Meta:
        model = Notification
        fields = ["id", "created_at", "title", "alert_status", "status", "sender", "approved_by", "approved_at",
                  "recipient_count", "reached", "acknowledged"]
        read_only_fields = fields
