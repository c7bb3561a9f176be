"""API doors on incident threads: send an update or the all-clear of an emergency alert, publish its incident.

Thin: the serializer checks shapes, the service (notifications.services.incidents) decides; a notification
the caller may not see answers 404 (as in notifications.api).
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import DEFAULT, api_key_of
from flashnotify.api_errors import Conflict
from flashnotify.api_schema import IDEMPOTENCY_KEY

from .api import IDEMPOTENCY_KEY_MAX, notifications_for
from .models import Notification
from .serializers import AudienceSerializer, NotificationCreateSerializer, NotificationDetailSerializer, \
    TranslationSerializer
from .services.incidents import FollowUpRefused, incident_follow_up, incident_follow_up_check, incident_publish

FOLLOW_UP_KINDS = [(Notification.ThreadRole.UPDATE.value, "Update"),
                   (Notification.ThreadRole.ALL_CLEAR.value, "All clear")]


class FollowUpSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=FOLLOW_UP_KINDS,
                                   help_text="update, or all_clear: closes the incident and stops its escalations "
                                             "and reminders.")
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(max_length=20_000)
    translations = serializers.DictField(child=TranslationSerializer(), required=False, default=dict,
                                         help_text='e.g. {"fr": {"title": "…", "body": "…"}}.')
    audience = AudienceSerializer(required=False, help_text="Defaults to the original alert's audience.")
    channels = serializers.ListField(child=serializers.CharField(max_length=10), required=False,
                                     help_text="Defaults to the original alert's channels.")


class PublishSerializer(serializers.Serializer):
    public = serializers.BooleanField(help_text="true: anyone may read the incident's CAP documents, without "
                                                "signing in; false: signed-in readers only.")


class IncidentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    alert_status = serializers.CharField()
    public = serializers.BooleanField()
    opened_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)


def _refused(exc):
    return Conflict(exc.message, code=exc.code)


class FollowUpApi(APIView):
    """Updates and the all-clear of an emergency alert, sent to the original's audience unless given."""

    permission_classes = DEFAULT
    required_perms = {"post": ["notifications.view_notification", "notifications.send_emergency"]}
    required_scopes = {"post": "send"}

    @extend_schema(
        summary="Send an update or the all-clear of an emergency alert", tags=["notifications"],
        parameters=[IDEMPOTENCY_KEY], request=FollowUpSerializer,
        responses={201: NotificationDetailSerializer,
                   200: OpenApiResponse(NotificationDetailSerializer, description="A replay (same Idempotency-Key)."),
                   409: OpenApiResponse(description="Not an emergency alert, or its all-clear was sent.")})
    def post(self, request, notification_id):
        original = get_object_or_404(notifications_for(request).select_related("incident"), pk=notification_id)
        try:
            incident_follow_up_check(original)  # 409 before a 400 about the content of a refused follow-up
        except FollowUpRefused as exc:
            raise _refused(exc)
        serializer = FollowUpSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and (len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable()):
            raise ValidationError({"Idempotency-Key": [f"Up to {IDEMPOTENCY_KEY_MAX} printable characters."]})
        data = serializer.validated_data
        try:
            notification, created = incident_follow_up(
                original, sender=request.user, api_key=api_key_of(request),
                idempotency_key=f"{request.user.pk}:{key}" if key else None, kind=data["kind"],
                title=data["title"], body=data["body"], translations=data.get("translations"),
                audience=data.get("audience"), channels=data.get("channels"))
        except FollowUpRefused as exc:
            raise _refused(exc)
        except DjangoValidationError as exc:
            raise ValidationError(NotificationCreateSerializer.errors_as_fields(exc.message_dict))
        return Response(NotificationDetailSerializer(notification, context={"just_created": created}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class PublishApi(APIView):
    """Publish an emergency alert's incident in the CAP feed (readable without signing in), or stop."""

    permission_classes = DEFAULT
    required_perms = {"post": ["notifications.view_notification", "notifications.send_emergency"]}
    required_scopes = {"post": "send"}

    @extend_schema(summary="Mark an emergency alert's incident public in the CAP feed, or not",
                   tags=["notifications"], request=PublishSerializer,
                   responses={200: IncidentSerializer,
                              409: OpenApiResponse(description="Not an emergency alert.")})
    def post(self, request, notification_id):
        notification = get_object_or_404(notifications_for(request).select_related("incident"), pk=notification_id)
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            incident = incident_publish(notification, by=request.user, public=serializer.validated_data["public"])
        except FollowUpRefused as exc:
            raise _refused(exc)
        return Response(IncidentSerializer(incident).data)
