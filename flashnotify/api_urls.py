"""/api/v1/: the integration API. Every route needs authentication unless listed in PUBLIC_PATHS."""

from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema, inline_serializer
from csp.decorators import csp_update
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts import api as accounts_api
from notifications import api as notifications_api
from notifications import api_incidents
from notifications import api_ledger
from notifications import api_templates
from notifications.services.monitoring import readiness_report

# Reachable without credentials; tests/test_api_authorization.py fails for any other route that is.
# "health/ready/" is listed on its own although "health/" covers it: readiness is public on purpose (load
# balancers call it without credentials), and answers check names and ok/fail only.
PUBLIC_PATHS = (
    "health/", "health/ready/", "schema/", "docs/", "docs/redoc/",
    "auth/token/", "auth/token/refresh/", "auth/token/verify/", "auth/logout/",
    "webhooks/twilio/status/", "webhooks/twilio/inbound/", "webhooks/anymail/",
)


@extend_schema(summary="Liveness", tags=["health"], auth=[],
               responses=inline_serializer("Health", {"status": serializers.CharField()}))
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
def health(request):
    return Response({"status": "ok"})


@extend_schema(summary="Readiness: database, cache, broker and a recent worker heartbeat", tags=["health"], auth=[],
               responses={200: inline_serializer("Readiness", {"status": serializers.CharField(),
                                                               "checks": serializers.DictField(
                                                                   child=serializers.CharField())}),
                          503: inline_serializer("Unready", {"status": serializers.CharField(),
                                                             "checks": serializers.DictField(
                                                                 child=serializers.CharField()),
                                                             "failed": serializers.ListField(
                                                                 child=serializers.CharField())})})
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
def readiness(request):
    checks = readiness_report()
    failed = [name for name, ok in checks.items() if not ok]
    body = {"status": "unready" if failed else "ready",
            "checks": {name: "ok" if ok else "fail" for name, ok in checks.items()}}
    if failed:
        body["failed"] = failed
    return Response(body, status=503 if failed else 200, headers={"Cache-Control": "no-store"})


router = SimpleRouter()
router.register("notifications", notifications_api.NotificationViewSet, basename="notification")
router.register("me/inbox", notifications_api.InboxViewSet, basename="inbox-message")
router.register("cohorts", accounts_api.CohortViewSet, basename="cohort")
router.register("api-keys", accounts_api.ApiKeyViewSet, basename="api-key")

app_name = "api"
# Swagger UI and ReDoc inject <style> elements, and ReDoc runs a worker from a blob: URL. The
# site's policy allows neither; these two pages alone get both (their scripts stay 'self' only).
DOCS_CSP = csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]})

urlpatterns = [
    path("health/", health, name="health"),
    path("health/ready/", readiness, name="readiness"),
    path("auth/token/", accounts_api.TokenObtainApi.as_view(), name="token"),
    path("auth/token/refresh/", accounts_api.TokenRefreshApi.as_view(), name="token-refresh"),
    path("auth/token/verify/", accounts_api.TokenVerifyApi.as_view(), name="token-verify"),
    path("auth/logout/", accounts_api.LogoutApi.as_view(), name="logout"),
    path("me/preferences/", notifications_api.PreferencesApi.as_view(), name="preferences"),
    path("me/push-subscriptions/", notifications_api.PushSubscriptionApi.as_view(), name="push-subscriptions"),
    path("users/", accounts_api.UsersUpsertApi.as_view(), name="users"),
    path("users/<str:username>/export/", accounts_api.UserExportApi.as_view(), name="user-export"),
    path("users/<str:username>/erase/", accounts_api.UserEraseApi.as_view(), name="user-erase"),
    path("metrics/", notifications_api.MetricsApi.as_view(), name="metrics"),
    path("notifications/<int:notification_id>/follow-ups/", api_incidents.FollowUpApi.as_view(),
         name="notification-follow-ups"),
    path("notifications/<int:notification_id>/publish/", api_incidents.PublishApi.as_view(),
         name="notification-publish"),
    re_path(r"^notifications/(?P<pk>[0-9]{1,18})/ledger/$", api_ledger.NotificationLedgerApi.as_view(),
            name="notification-ledger"),
    path("ledger/", api_ledger.LedgerRangeApi.as_view(), name="ledger"),
    path("notifications/estimate/", api_templates.NotificationEstimateApi.as_view(), name="notification-estimate"),
    path("incident-templates/", api_templates.IncidentTemplateListApi.as_view(), name="incident-templates"),
    path("incident-templates/<int:template_id>/send/", api_templates.IncidentTemplateSendApi.as_view(),
         name="incident-template-send"),
    path("drills/", notifications_api.DrillsApi.as_view(), name="drills"),
    path("webhooks/", include(("channels_app.urls", "webhooks"))),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", DOCS_CSP(SpectacularSwaggerSplitView.as_view(url_name="api:schema")), name="docs"),
    path("docs/redoc/", DOCS_CSP(SpectacularRedocView.as_view(url_name="api:schema")), name="redoc"),
    *router.urls,
]
