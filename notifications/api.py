"""API doors on notifications: sending, reading deliveries, the caller's inbox and preferences, metrics.

Thin: each endpoint validates input, scopes the queryset to the caller (another user's
object answers 404), and calls a service or a selector.
"""

from datetime import timedelta
from datetime import timezone as dt_timezone

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import DEFAULT, NotApiKey, api_key_of
from channels_app.breaker import CircuitBreaker
from channels_app.constants import MANDATORY_CATEGORIES, Category, Channel
from channels_app.models import PushSubscription
from channels_app.subscriptions import push_subscription_save
from .models import Delivery, InboxMessage, Notification
from flashnotify.api_errors import Conflict
from flashnotify.api_pagination import CheckedCursorPagination, cursor_pagination
from flashnotify.api_schema import IDEMPOTENCY_KEY

from . import selectors, services
from .services import inbox
from .services.preferences import preference_grid, preferences_save
from .serializers import (
    DeliverySerializer,
    DrillSerializer,
    DrillsQuerySerializer,
    ExplainQuerySerializer,
    InboxMessageSerializer,
    MetricsQuerySerializer,
    MetricsSerializer,
    NotificationCreateSerializer,
    NotificationDetailSerializer,
    NotificationSerializer,
    PreferencesSerializer,
    PreviewSerializer,
    PushSubscriptionOutSerializer,
    PushSubscriptionSerializer,
    RecipientExplanationSerializer,
    RollCallSerializer,
    RejectSerializer,
)

IDEMPOTENCY_KEY_MAX = 150
ID_REGEX = "[0-9]{1,18}"


# --- notifications ------------------------------------------------------------------------

class UTCDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601, turned into UTC: PostgreSQL refuses offsets Python accepts (up to ±24 h)."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and timezone.is_aware(value):
            try:
                value = value.astimezone(dt_timezone.utc)
            except OverflowError:
                raise forms.ValidationError("This date is out of range.", code="invalid")
        return value


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class NotificationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Notification.Status.choices)
    category = django_filters.ChoiceFilter(choices=Category.choices)
    sender = django_filters.CharFilter(field_name="sender__username", max_length=150,
                                       help_text="Username of the sender.")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Notification
        fields = ["status", "category", "sender", "created_after", "created_before"]


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Delivery.Status.choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    recipient = django_filters.CharFilter(field_name="recipient__username", max_length=150)

    class Meta:
        model = Delivery
        fields = ["status", "channel", "recipient"]


def notifications_for(request):
    """What the caller may see: the selector's answer, narrowed to an API key's cohorts."""
    notifications = selectors.notifications_visible_to(request.user)
    key = api_key_of(request)
    if key is not None and key.cohorts.exists():
        # Like staff, a key limited to cohorts sees a notification only when its whole audience is theirs.
        links = Notification.cohorts.through.objects
        notifications = (notifications
                         .filter(pk__in=links.filter(cohort__in=key.cohorts.all()).values("notification_id"))
                         .exclude(pk__in=links.exclude(cohort__in=key.cohorts.all()).values("notification_id"))
                         .exclude(audience__has_key="everyone").exclude(audience__has_key="roles"))
    return notifications


@extend_schema_view(
    list=extend_schema(summary="Notifications you sent or may oversee"),
    retrieve=extend_schema(summary="One notification, with delivery counts per channel and status"),
    create=extend_schema(
        summary="Send a notification (accepted and queued; workers deliver it)",
        parameters=[IDEMPOTENCY_KEY], request=NotificationCreateSerializer,
        responses={201: NotificationDetailSerializer,
                   200: OpenApiResponse(NotificationDetailSerializer,
                                        description="A replay: same Idempotency-Key and body as an earlier request.")}),
    cancel=extend_schema(summary="Cancel a notification awaiting approval, scheduled or running", request=None,
                         responses={200: NotificationDetailSerializer}),
    approve=extend_schema(summary="Approve an emergency alert another person drafted: it is sent",
                          request=None, responses={200: NotificationDetailSerializer}),
    reject=extend_schema(summary="Refuse an emergency alert another person drafted: it is cancelled, with the reason",
                         request=RejectSerializer, responses={200: NotificationDetailSerializer}),
    deliveries=extend_schema(summary="Deliveries of a notification", filters=False, parameters=[
        OpenApiParameter("status", str, enum=Delivery.Status.values),
        OpenApiParameter("channel", str, enum=Channel.values),
        OpenApiParameter("recipient", str, description="Username of the recipient."),
    ], responses=DeliverySerializer(many=True)),
    explain=extend_schema(summary="Why a recipient got it, or did not: each requested channel, its state and reason",
                          parameters=[ExplainQuerySerializer], responses=RecipientExplanationSerializer),
    roll_call=extend_schema(summary="The check-in roll call of an alert: safe, need help, other answers, no answer",
                            responses=RollCallSerializer),
    preview=extend_schema(summary="Render a notification for one recipient on each channel",
                          parameters=[PreviewSerializer],
                          responses={200: OpenApiResponse(
                              {"type": "object", "additionalProperties": {
                                  "type": "object", "additionalProperties": {"type": "string"}}},
                              description="{channel: {part: text}}")}),
)
class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Notification.objects.none()
    permission_classes = DEFAULT
    required_perms = {
        "list": ["notifications.view_notification"], "retrieve": ["notifications.view_notification"],
        "create": ["notifications.add_notification"], "cancel": ["notifications.change_notification"],
        "deliveries": ["notifications.view_delivery"], "preview": ["notifications.view_notification"],
        "explain": ["notifications.view_delivery"], "roll_call": ["notifications.view_notification"],
        "approve": ["notifications.send_emergency"], "reject": ["notifications.send_emergency"],
    }
    required_scopes = {"list": "read_deliveries", "retrieve": "read_deliveries", "deliveries": "read_deliveries",
                       "preview": "read_deliveries", "explain": "read_deliveries", "create": "send", "cancel": "send",
                       "roll_call": "read_deliveries", "approve": "send", "reject": "send"}
    lookup_value_regex = ID_REGEX
    filterset_class = NotificationFilter
    pagination_class = cursor_pagination("-created_at")

    def get_queryset(self):
        return notifications_for(self.request).select_related("sender")

    def get_serializer_class(self):
        if self.action == "list":
            return NotificationSerializer
        if self.action == "deliveries":
            return DeliverySerializer
        return NotificationDetailSerializer

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset  # the filters are the list's; deliveries/ has its own
        return super().filter_queryset(queryset)

    def create(self, request):
        serializer = NotificationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and (len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable()):
            raise ValidationError({"Idempotency-Key": [f"Up to {IDEMPOTENCY_KEY_MAX} printable characters."]})
        notification, created = services.notification_send(
            sender=request.user, api_key=api_key_of(request),
            # Keys are per sender: another sender's key never replays (or reveals) their notification.
            idempotency_key=f"{request.user.pk}:{key}" if key else None,
            **serializer.validated_data,
        )
        return Response(NotificationDetailSerializer(notification, context={"just_created": created}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        notification = self.get_object()
        try:
            services.notification_cancel(notification, by=request.user)
        except DjangoValidationError as exc:
            raise Conflict(exc.messages[0], code="not_cancellable")
        return Response(NotificationDetailSerializer(notification).data)

    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """The two-person rule's second person: 403 for the drafter, 409 unless it awaits approval."""
        notification = self.get_object()
        try:
            services.notification_approve(notification, by=request.user)
        except DjangoValidationError as exc:  # not awaiting approval, or a follow-up of a closed incident
            raise Conflict(exc.messages[0], code=exc.code or "not_awaiting_approval")
        return Response(NotificationDetailSerializer(notification).data)

    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        notification = self.get_object()
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.notification_reject(notification, by=request.user, reason=body.validated_data["reason"])
        except DjangoValidationError as exc:
            if getattr(exc, "code", None) == "not_awaiting_approval":
                raise Conflict(exc.messages[0], code="not_awaiting_approval")
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
        return Response(NotificationDetailSerializer(notification).data)

    @action(detail=True, methods=["get"], pagination_class=cursor_pagination("id", 100))
    def deliveries(self, request, pk=None):
        notification = self.get_object()
        deliveries = Delivery.objects.filter(notification=notification).select_related("recipient")
        deliveries = DeliveryFilter(request.query_params, queryset=deliveries, request=request)
        if not deliveries.is_valid():
            raise ValidationError(deliveries.errors)
        page = self.paginate_queryset(deliveries.qs)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @action(detail=True, methods=["get"])
    def explain(self, request, pk=None):
        notification = self.get_object()
        query = ExplainQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        recipient = selectors.notification_recipient(notification, query.validated_data["recipient"])
        if recipient is None:
            raise NotFound("No such recipient of this notification.")
        channels = selectors.recipient_explanation(notification, recipient)
        return Response(RecipientExplanationSerializer({
            "notification": notification.pk, "recipient": recipient.username, "channels": channels,
            "reached": any(line["status"] in Delivery.REACHED_STATUSES for line in channels),
        }).data)

    @action(detail=True, methods=["get"], url_path="roll-call")
    def roll_call(self, request, pk=None):
        """Each person the alert reached by their latest check-in answer (phone numbers for "need help")."""
        notification = self.get_object()
        return Response(RollCallSerializer(selectors.notification_roll_call(notification)).data)

    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        notification = self.get_object()
        query = PreviewSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        username = query.validated_data.get("recipient")
        if username:
            recipient = get_object_or_404(selectors.audience_users(notification.audience), username=username)
        else:
            recipient = request.user
        return Response(services.notification_preview(notification, recipient))


# --- the caller's inbox -------------------------------------------------------------------

class InboxFilter(django_filters.FilterSet):
    unread = django_filters.BooleanFilter(field_name="read_at", lookup_expr="isnull", help_text="Only unread.")
    category = django_filters.ChoiceFilter(choices=Category.choices)

    class Meta:
        model = InboxMessage
        fields = ["unread", "category"]


class InboxPagination(CheckedCursorPagination):
    ordering = "-created_at"
    page_size = 20

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["unread_count"] = self.unread_count
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["unread_count"] = {"type": "integer", "description": "Unread messages in all."}
        schema["required"] = ["results", "unread_count"]
        return schema


INBOX_COLUMNS = {"id": "id", "notification": "notification_id", "title": "title", "body": "body",
                 "category": "category", "priority": "notification__priority",
                 "requires_ack": "notification__requires_ack", "created_at": "created_at", "read_at": "read_at",
                 "acknowledged_at": "acknowledged_at", "incident": "notification__incident_id",
                 "thread_role": "notification__thread_role"}


@extend_schema_view(
    list=extend_schema(summary="Your inbox, newest first, with your unread count"),
    retrieve=extend_schema(summary="One message of your inbox"),
    read=extend_schema(summary="Mark a message read", request=None, responses=InboxMessageSerializer),
    ack=extend_schema(summary="Acknowledge a message", request=None, responses=InboxMessageSerializer),
)
class InboxViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Only the caller's own messages: another user's message answers 404."""

    queryset = InboxMessage.objects.none()
    serializer_class = InboxMessageSerializer
    permission_classes = [IsAuthenticated, NotApiKey]
    lookup_value_regex = ID_REGEX
    filterset_class = InboxFilter
    pagination_class = InboxPagination

    def get_queryset(self):
        return InboxMessage.objects.filter(recipient=self.request.user).select_related("notification")

    def filter_queryset(self, queryset):
        if self.action != "list" or not set(InboxFilter.base_filters) & set(self.request.query_params):
            return queryset  # no filter asked: no FilterSet (and its form) built for the busiest read
        return super().filter_queryset(queryset)

    def list(self, request):
        # The busiest read of the API: rows as dicts (the same fields as InboxMessageSerializer),
        # no model instances and no serializer per row; the unread count from the cache.
        rows = self.filter_queryset(self.get_queryset()).values(*INBOX_COLUMNS.values())
        self.paginator.unread_count = selectors.inbox_unread_count(request.user.pk)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(
            [{name: row[column] for name, column in INBOX_COLUMNS.items()} for row in page])

    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        return Response(self.get_serializer(inbox.message_mark_read(self.get_object())).data)

    @action(detail=True, methods=["post"])
    def ack(self, request, pk=None):
        return Response(self.get_serializer(inbox.message_acknowledge(self.get_object())).data)


# --- the caller's preferences -------------------------------------------------------------

class PreferencesApi(APIView):
    """The caller's choices per category and channel; unset pairs show the administrator's default."""

    permission_classes = [IsAuthenticated, NotApiKey]

    def _grid(self, user):
        grid = []
        for row in preference_grid(user)["categories"]:
            for channel, cell in row["channels"].items():
                grid.append({"category": row["category"], "channel": channel, "enabled": cell["enabled"],
                             "digest": row["digest"] if channel == Channel.EMAIL else False,
                             "mandatory": row["mandatory"]})
        return {"preferences": grid}

    @extend_schema(summary="Your notification preferences", responses=PreferencesSerializer)
    def get(self, request):
        return Response(self._grid(request.user))

    def _save(self, request, *, complete):
        serializer = PreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rows = serializer.validated_data["preferences"]
        if complete:
            missing = {(c, ch) for c in Category.values for ch in Channel.values} - {
                (r["category"], r["channel"]) for r in rows}
            if missing:
                raise ValidationError({"preferences": [
                    f"PUT sets every category and channel; missing {len(missing)}, e.g. "
                    f"{'/'.join(sorted(missing)[0])}. Use PATCH to change a few."]})
        channels, digests = {}, {}
        for row in rows:
            if row["category"] in MANDATORY_CATEGORIES and row["enabled"]:
                continue  # always on: saying so again is not a change
            channels.setdefault(row["category"], {})[row["channel"]] = row["enabled"]
            if row.get("digest") is not None and row["channel"] == Channel.EMAIL:
                digests[row["category"]] = row["digest"]
        try:
            preferences_save(request.user, channels=channels, digests=digests)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict)
        return Response(self._grid(request.user))

    @extend_schema(summary="Set every preference", request=PreferencesSerializer, responses=PreferencesSerializer)
    def put(self, request):
        return self._save(request, complete=True)

    @extend_schema(summary="Change some preferences", request=PreferencesSerializer, responses=PreferencesSerializer)
    def patch(self, request):
        return self._save(request, complete=False)


# --- the caller's push subscriptions ------------------------------------------------------

class PushSubscriptionApi(APIView):
    permission_classes = [IsAuthenticated, NotApiKey]

    @extend_schema(summary="Register this browser for web push", request=PushSubscriptionSerializer,
                   responses={201: PushSubscriptionOutSerializer, 200: PushSubscriptionOutSerializer})
    def post(self, request):
        serializer = PushSubscriptionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            subscription, created = push_subscription_save(
                user=request.user, endpoint=data["endpoint"], p256dh=data["keys"]["p256dh"],
                auth=data["keys"]["auth"], user_agent=data.get("user_agent", ""))
        except DjangoValidationError as exc:
            errors = dict(exc.message_dict)
            keys = {name: errors.pop(name) for name in ("p256dh", "auth") if name in errors}
            raise ValidationError({**errors, **({"keys": keys} if keys else {})})
        return Response(PushSubscriptionOutSerializer(subscription).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(summary="Unregister a browser", parameters=[
        OpenApiParameter("endpoint", str, required=True, description="The subscription's endpoint URL.")],
        responses={204: None})
    def delete(self, request):
        endpoint = request.query_params.get("endpoint", "")
        if not endpoint or len(endpoint) > 1000 or "\x00" in endpoint:
            raise ValidationError({"endpoint": ["Give the subscription's endpoint URL."]})
        subscription = get_object_or_404(PushSubscription, user=request.user, endpoint=endpoint)
        subscription.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- drills -------------------------------------------------------------------------------

class DrillsApi(APIView):
    """Exercise and test alerts of a year, for the Clery Act's yearly test of the emergency system."""

    permission_classes = DEFAULT
    required_perms = {"get": ["notifications.send_emergency"]}
    required_scopes = {"get": "read_deliveries"}

    @extend_schema(summary="Exercise and test alerts of a year: sent by, approved by, reach, acknowledgements",
                   parameters=[DrillsQuerySerializer], responses=DrillSerializer(many=True))
    def get(self, request):
        query = DrillsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.drills(request.user, year=query.validated_data["year"])
        return Response(DrillSerializer(rows, many=True).data)


# --- metrics ------------------------------------------------------------------------------

PROVIDERS = ("email", "sms", "push")
LATENCY_SAMPLE = 50_000


def _percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return round(sorted_values[index], 1)


class MetricsApi(APIView):
    permission_classes = DEFAULT
    required_perms = {"get": ["channels_app.view_performancemetric"]}
    required_scopes = {"get": "read_deliveries"}

    @extend_schema(summary="Deliveries per channel and status, send latency, circuit breakers",
                   parameters=[MetricsQuerySerializer], responses=MetricsSerializer)
    def get(self, request):
        query = MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        until = query.validated_data.get("until") or timezone.now()
        since = query.validated_data.get("since") or until - timedelta(hours=24)
        if since >= until:
            raise ValidationError({"since": ["`since` must be before `until`."]})
        counts = {}
        for row in (Delivery.objects.filter(created_at__gte=since, created_at__lt=until)
                    .values("channel", "status").annotate(n=Count("id")).order_by()):
            counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
        samples = {}
        for channel, created, sent in (Delivery.objects.filter(sent_at__gte=since, sent_at__lt=until)
                                       .order_by("-sent_at").values_list("channel", "created_at", "sent_at")
                                       [:LATENCY_SAMPLE]):
            samples.setdefault(channel, []).append((sent - created).total_seconds() * 1000)
        latency = {}
        for channel, values in samples.items():
            values.sort()
            latency[channel] = {"count": len(values), "p50_ms": _percentile(values, 0.5),
                                "p95_ms": _percentile(values, 0.95), "p99_ms": _percentile(values, 0.99)}
        return Response({
            "since": serializers.DateTimeField().to_representation(since),
            "until": serializers.DateTimeField().to_representation(until),
            "deliveries": counts, "latency": latency,
            "breakers": [CircuitBreaker(provider).snapshot() for provider in PROVIDERS],
        })
