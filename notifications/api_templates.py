"""API doors on emergency alerting: incident templates (list, send one) and the estimate before a send.

Thin: sending is `alert_from_template`, the estimate `alert_estimate`; both validate as the send does
(400 by field) and check who asks (the emergency permission for templates, 403 otherwise).
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import DEFAULT, api_key_of
from channels_app.constants import Channel
from flashnotify.api_schema import IDEMPOTENCY_KEY

from .api import IDEMPOTENCY_KEY_MAX
from .models import IncidentTemplate, Notification
from .serializers import AudienceSerializer, NotificationCreateSerializer, NotificationDetailSerializer
from .services.estimate import alert_estimate
from .services.templates import alert_from_template


def idempotency_key(request):
    """The caller's Idempotency-Key header, per sender (as POST notifications/ keys it), or None."""
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and (len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable()):
        raise ValidationError({"Idempotency-Key": [f"Up to {IDEMPOTENCY_KEY_MAX} printable characters."]})
    return f"{request.user.pk}:{key}" if key else None


class IncidentTemplateSerializer(serializers.ModelSerializer):
    variables = serializers.ListField(child=serializers.CharField(), read_only=True,
                                      help_text="The {names} to fill in when sending.")
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices), read_only=True,
                                     help_text="Empty: every channel of an emergency alert.")
    escalation = serializers.SerializerMethodField(help_text="Per-alert escalation: delay in minutes (null: the "
                                                                "emergency alert's own) and ladder of channels.")

    class Meta:
        model = IncidentTemplate
        fields = ["id", "name", "kind", "version", "variables", "channels", "severity", "checkin", "escalation"]
        read_only_fields = fields

    def get_escalation(self, template) -> dict:
        return {"delay_minutes": template.escalation_delay_minutes, "ladder": template.escalation_ladder}


class IncidentTemplateSendSerializer(serializers.Serializer):
    variables = serializers.DictField(child=serializers.CharField(max_length=500, allow_blank=True), default=dict,
                                      help_text='A value for each of the template\'s variables, e.g. '
                                                '{"building": "Library", "time": "14:05"}: one line each.')
    alert_status = serializers.ChoiceField(choices=Notification.AlertStatus.choices,
                                           default=Notification.AlertStatus.ACTUAL)
    audience = AudienceSerializer(required=False, help_text="Default: the template's audience.")
    checkin = serializers.BooleanField(required=False, allow_null=True, default=None,
                                       help_text="Ask for an SMS check-in; default: the template's.")


class ChannelEstimateSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    label = serializers.CharField()
    recipients = serializers.IntegerField(help_text="Deliveries the planner makes on this channel now.")
    rate = serializers.FloatField(help_text="Messages per second handed to the provider.")
    rate_source = serializers.CharField(help_text="The setting the rate comes from: the provider's rate limit "
                                                  "(EMAIL_RATE_LIMIT, SMS_RATE_LIMIT, PUSH_RATE_LIMIT) or "
                                                  "ALERT_ESTIMATE_RATES.")
    seconds = serializers.FloatField()


class SmsVersionEstimateSerializer(serializers.Serializer):
    language = serializers.CharField()
    recipients = serializers.IntegerField()
    segments = serializers.IntegerField()
    characters = serializers.IntegerField()
    encoding = serializers.CharField()


class SmsEstimateSerializer(serializers.Serializer):
    recipients = serializers.IntegerField()
    segments = serializers.IntegerField(help_text="Of the longest language version, as it will be sent.")
    versions = SmsVersionEstimateSerializer(many=True)
    price_per_segment = serializers.FloatField()
    currency = serializers.CharField()
    cost = serializers.FloatField(help_text="Σ segments × recipients × price_per_segment, per language version.")


class EstimateSerializer(serializers.Serializer):
    people = serializers.IntegerField(help_text="The audience.")
    channels = ChannelEstimateSerializer(many=True)
    seconds = serializers.FloatField(help_text="Time to hand everything to the providers: the slowest channel.")
    target_minutes = serializers.IntegerField(help_text="ALERT_TARGET_MINUTES.")
    over_target = serializers.BooleanField()
    warning = serializers.CharField(allow_blank=True)
    sms = SmsEstimateSerializer()


class IncidentTemplateListApi(APIView):
    permission_classes = DEFAULT
    required_perms = {"get": ["notifications.view_incidenttemplate"]}
    required_scopes = {"get": "send"}

    @extend_schema(summary="Active incident templates: what an emergency alert can be sent from",
                   tags=["incident-templates"], responses=IncidentTemplateSerializer(many=True))
    def get(self, request):
        templates = IncidentTemplate.objects.filter(active=True).order_by("kind", "name")
        return Response(IncidentTemplateSerializer(templates, many=True).data)


class IncidentTemplateSendApi(APIView):
    permission_classes = DEFAULT
    required_perms = {"post": ["notifications.send_emergency"]}
    required_scopes = {"post": "send"}

    @extend_schema(summary="Send an emergency alert from an incident template (it goes at once)",
                   tags=["incident-templates"], parameters=[IDEMPOTENCY_KEY], request=IncidentTemplateSendSerializer,
                   responses={201: NotificationDetailSerializer,
                              200: OpenApiResponse(NotificationDetailSerializer, description="A replay: same "
                                                   "Idempotency-Key and body as an earlier request.")})
    def post(self, request, template_id):
        template = IncidentTemplate.objects.filter(pk=template_id).first()
        if template is None:
            raise NotFound()  # an inactive one is refused by the service, by field (`template`)
        serializer = IncidentTemplateSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        audience = data.get("audience")
        if audience is not None:
            audience = {key: value for key, value in audience.items() if value}
        notification, created = alert_from_template(
            template, sender=request.user, api_key=api_key_of(request), idempotency_key=idempotency_key(request),
            variables=data["variables"], alert_status=data["alert_status"], audience=audience,
            checkin=data.get("checkin"))
        return Response(NotificationDetailSerializer(notification, context={"just_created": created}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class NotificationEstimateApi(APIView):
    permission_classes = DEFAULT
    required_perms = {"post": ["notifications.add_notification"]}
    required_scopes = {"post": "send"}

    @extend_schema(summary="Estimate a send before making it: recipients and time per channel, SMS cost",
                   tags=["notifications"], request=NotificationCreateSerializer, responses=EstimateSerializer)
    def post(self, request):
        serializer = NotificationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        estimate = alert_estimate(sender=request.user, api_key=api_key_of(request), **serializer.validated_data)
        return Response(EstimateSerializer(estimate).data)
