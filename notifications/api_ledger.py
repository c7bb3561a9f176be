"""API doors on the compliance ledger: an alert's ledger and a period's, as JSON or CSV. Read-only: every
other method answers 405. Needs `notifications.view_ledgerentry` (Admin; the Emergency role); an API key,
the `read_deliveries` scope too. Thin: notifications.services.ledger reads and exports.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.views import APIView

from accounts.permissions import DEFAULT

from .services.ledger import (
    EXPORT_FORMATS, alert_scope, ledger_alert_entries, ledger_between, ledger_export, ledger_range_clean,
    range_scope,
)

PERMS = ["notifications.view_ledgerentry"]


class FormatIsAParameter(DefaultContentNegotiation):
    """`?format=` is these views' own parameter (json or csv, checked like any other), not DRF's switch
    of renderer: a bad value is a 400 with the field's message, never a 404."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class LedgerFormatSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, default="json")


class LedgerRangeSerializer(LedgerFormatSerializer):
    since = serializers.DateTimeField(required=False, help_text="Included. Default: 30 days before `until`.")
    until = serializers.DateTimeField(required=False, help_text="Excluded. Default: now.")


class LedgerEntryOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    notification = serializers.IntegerField()
    incident = serializers.IntegerField(allow_null=True)
    event = serializers.CharField()
    event_label = serializers.CharField()
    actor = serializers.CharField(help_text="Who acted, as their name was then; empty for the system.")
    actor_id = serializers.IntegerField(allow_null=True)
    data = serializers.DictField(help_text="The event's details: counts, content, status…")
    previous_digest = serializers.CharField()
    digest = serializers.CharField(help_text="SHA-256 of this entry and the previous entry's digest.")


class LedgerChainSerializer(serializers.Serializer):
    intact = serializers.BooleanField()
    broken_at = serializers.IntegerField(allow_null=True, help_text="The first entry whose digest or link fails.")
    checked = serializers.IntegerField()


class LedgerExportSerializer(serializers.Serializer):
    format = serializers.CharField(help_text="flashnotify-ledger/1")
    exported_at = serializers.DateTimeField()
    scope = serializers.DictField(help_text='{"notification", "incident"} or {"since", "until"}')
    chain = LedgerChainSerializer()
    entries = LedgerEntryOutSerializer(many=True)


EXPORT_RESPONSES = {
    (200, "application/json"): LedgerExportSerializer,
    (200, "text/csv"): OpenApiResponse(
        {"type": "string"}, description="`?format=csv`: one row per entry (formula-safe cells), `details` as JSON."),
}
FORMAT = OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), default="json")


def _download(request, entries, *, fmt, scope):
    filename, content_type, chunks = ledger_export(entries, fmt=fmt, scope=scope, by=request.user)
    response = StreamingHttpResponse(chunks, content_type=content_type)
    if fmt == "csv":
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class LedgerApi(APIView):
    """Shared by both: read-only, the ledger's permission, `read_deliveries` for an API key."""

    permission_classes = DEFAULT
    required_perms = {"get": PERMS}
    required_scopes = {"get": "read_deliveries"}
    content_negotiation_class = FormatIsAParameter


class NotificationLedgerApi(LedgerApi):
    """Every entry of the alert's thread (its incident's notifications), in chain order; the JSON says whether
    the stretch of the chain they lie in holds. The ledger outlives the notification: it answers after a
    purge too. `notifications.view_ledgerentry` needed."""

    @extend_schema(tags=["ledger"], operation_id="notifications_ledger",
                   summary="The compliance ledger of an emergency alert and its thread (updates, all-clear)",
                   parameters=[FORMAT], responses=EXPORT_RESPONSES)
    def get(self, request, pk):
        query = LedgerFormatSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        pk = int(pk)
        entries = ledger_alert_entries(pk)
        if entries is None:
            raise NotFound("The ledger holds nothing of this notification.")
        return _download(request, entries, fmt=query.validated_data["format"], scope=alert_scope(pk, entries))


class LedgerRangeApi(LedgerApi):
    """Every entry recorded in the period, whatever the alert, in chain order. `notifications.view_ledgerentry`
    needed."""

    @extend_schema(tags=["ledger"], operation_id="ledger_range",
                   summary="The compliance ledger of a period, every emergency alert's",
                   parameters=[LedgerRangeSerializer], responses=EXPORT_RESPONSES)
    def get(self, request):
        query = LedgerRangeSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            since, until = ledger_range_clean(query.validated_data.get("since"), query.validated_data.get("until"))
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict)
        return _download(request, ledger_between(since, until), fmt=query.validated_data["format"],
                         scope=range_scope(since, until))
