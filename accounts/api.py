"""API doors on accounts: tokens, API keys, cohorts, user provisioning. Thin callers of services."""

from django.core.exceptions import ValidationError
from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views

from flashnotify.api_pagination import cursor_pagination
from .roles import is_admin

from . import data_rights, services
from .models import ApiKey, Cohort, User
from .permissions import DEFAULT, IsAdministrator, NotApiKey, api_key_of
from .serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    CohortSerializer,
    LogoutSerializer,
    MemberSerializer,
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
    TokenVerifySerializer,
    UserErasedSerializer,
    UserExportSerializer,
    UsersUpsertResultSerializer,
    UsersUpsertSerializer,
)
from .throttling import SignInGuard

# --- tokens -------------------------------------------------------------------------------


@extend_schema(tags=["auth"], summary="Obtain an access and a refresh token")
class TokenObtainApi(jwt_views.TokenObtainPairView):
    """Sign-ins are throttled per address and locked out per account, as on the pages (SignInGuard)."""

    serializer_class = TokenObtainPairSerializer
    throttle_classes = []  # SignInGuard counts the address, with the pages' sign-ins

    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if isinstance(request.data, dict) else None
        guard = SignInGuard(request, username)
        guard.check()
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            guard.failed()
            raise
        guard.succeeded()
        return response


@extend_schema(tags=["auth"], summary="Exchange a refresh token for new tokens (the old one is blacklisted)")
class TokenRefreshApi(jwt_views.TokenRefreshView):
    serializer_class = TokenRefreshSerializer


@extend_schema(tags=["auth"], summary="Check that a token is valid")
class TokenVerifyApi(jwt_views.TokenVerifyView):
    serializer_class = TokenVerifySerializer


@extend_schema(tags=["auth"], summary="Log out: blacklist the refresh token", request=LogoutSerializer,
               responses={204: OpenApiResponse(description="The refresh token is blacklisted.")})
class LogoutApi(jwt_views.TokenBlacklistView):
    def post(self, request, *args, **kwargs):
        super().post(request, *args, **kwargs)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys -----------------------------------------------------------------------------

GRANTABLE_BY_NON_ADMIN = {ApiKey.Scope.SEND, ApiKey.Scope.READ_DELIVERIES}


@extend_schema_view(
    list=extend_schema(summary="Your API keys (every key, for an administrator)"),
    create=extend_schema(summary="Create an API key; the full key is in this response only",
                         responses={201: ApiKeyCreatedSerializer}),
    retrieve=extend_schema(summary="One API key"),
    destroy=extend_schema(summary="Revoke an API key at once", responses={204: None}),
)
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """API keys are managed by signed-in users (not with an API key). Staff and API users manage
    their own; an administrator manages every key."""

    queryset = ApiKey.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = ApiKeySerializer
    permission_classes = [*DEFAULT, NotApiKey]
    required_perms = {action: ["notifications.add_notification"]
                      for action in ("list", "retrieve", "create", "destroy")}
    lookup_value_regex = "[0-9]{1,18}"
    pagination_class = cursor_pagination("-created_at")

    def get_queryset(self):
        keys = ApiKey.objects.select_related("user").prefetch_related("cohorts")
        return keys if is_admin(self.request.user) else keys.filter(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not is_admin(request.user):
            refused = set(data["scopes"]) - GRANTABLE_BY_NON_ADMIN
            if refused:
                raise DRFValidationError({"scopes": [f"Only an administrator may grant {', '.join(sorted(refused))}."]})
            managed = set(request.user.managed_cohorts.values_list("pk", flat=True))
            outside = [c.code for c in data.get("cohorts", []) if c.pk not in managed]
            if outside:
                raise DRFValidationError({"cohorts": [f"You do not manage: {', '.join(sorted(outside))}."]})
        key, raw = services.api_key_create(user=request.user, name=data["name"], scopes=data["scopes"],
                                           cohorts=data.get("cohorts", ()), expires_at=data.get("expires_at"))
        body = ApiKeyCreatedSerializer(key).data
        body["key"] = raw
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.api_key_revoke(instance)


# --- cohorts ------------------------------------------------------------------------------


def cohorts_visible_to(request):
    """Admin (and manage_users keys of admins): all; a key limited to cohorts: those; Staff: managed."""
    cohorts = Cohort.objects.all()
    key = api_key_of(request)
    if key is not None and key.cohorts.exists():
        cohorts = cohorts.filter(pk__in=key.cohorts.values("pk"))
    if is_admin(request.user):
        return cohorts
    return cohorts.filter(managers=request.user)


@extend_schema_view(
    list=extend_schema(summary="Cohorts you may reach"),
    retrieve=extend_schema(summary="One cohort"),
    create=extend_schema(summary="Create a cohort (administrators, or a manage_users key of one)"),
    members=extend_schema(summary="Members of a cohort", responses=MemberSerializer(many=True)),
)
class CohortViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    viewsets.GenericViewSet):
    queryset = Cohort.objects.none()
    serializer_class = CohortSerializer
    permission_classes = DEFAULT
    lookup_field = "code"
    lookup_value_regex = "[-a-zA-Z0-9_]{1,64}"
    required_perms = {"list": ["accounts.view_cohort"], "retrieve": ["accounts.view_cohort"],
                      "members": ["accounts.view_cohort"], "create": ["accounts.add_cohort"]}
    required_scopes = {"list": ("send", "manage_users"), "retrieve": ("send", "manage_users"),
                       "members": "manage_users", "create": "manage_users"}
    pagination_class = cursor_pagination("code")

    def get_queryset(self):
        return cohorts_visible_to(self.request).annotate(member_count=Count("members"))

    def perform_create(self, serializer):
        serializer.save().member_count = 0

    @action(detail=True, methods=["get"], pagination_class=cursor_pagination("username", 100))
    def members(self, request, code=None):
        cohort = self.get_object()
        members = User.objects.filter(cohorts=cohort).only("id", "username", "first_name", "last_name", "email")
        page = self.paginate_queryset(members)
        return self.get_paginated_response(MemberSerializer(page, many=True).data)


# --- provisioning -------------------------------------------------------------------------


class UsersUpsertApi(APIView):
    """Create or update users in bulk by username, with their cohort memberships.

    Every row is validated; invalid rows are reported with their errors and nothing of them
    is written, while valid rows are applied. With `dry_run`, nothing is written.
    """

    permission_classes = DEFAULT
    required_perms = {"post": ["accounts.add_user", "accounts.change_user"]}
    required_scopes = {"post": "manage_users"}

    @extend_schema(summary="Create or update users in bulk", request=UsersUpsertSerializer,
                   responses={200: UsersUpsertResultSerializer})
    def post(self, request):
        serializer = UsersUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dry_run = serializer.validated_data["dry_run"]
        report = services.users_upsert(serializer.validated_data["users"], dry_run=dry_run)
        return Response({
            "dry_run": dry_run,
            "summary": report.summary(),
            "rows": [{"line": row.line, "username": row.username, "action": row.action, "errors": row.errors}
                     for row in report.rows],
        })


# --- data rights --------------------------------------------------------------------------

USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH, description="The person's username.")


class DataRightsApi(APIView):
    """Administrators only, signed in as themselves (no API key): the admin history records who asked.
    Anyone else gets 403 before the username is looked up, so it tells them nothing."""

    permission_classes = [*DEFAULT, IsAdministrator]

    def person(self, username):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"No user {username!r}.")
        return user


class UserExportApi(DataRightsApi):
    required_perms = {"get": ["accounts.view_user"]}

    @extend_schema(tags=["users"], summary="Everything held about one person, as JSON (administrators)",
                   parameters=[USERNAME], responses=UserExportSerializer)
    def get(self, request, username):
        return Response(data_rights.user_data_export(user=self.person(username), by=request.user))


class UserEraseApi(DataRightsApi):
    required_perms = {"post": ["accounts.change_user", "accounts.delete_user"]}

    @extend_schema(tags=["users"], summary="Erase one person's personal data, keeping counts true (administrators)",
                   parameters=[USERNAME], request=None, responses=UserErasedSerializer)
    def post(self, request, username):
        try:
            done = data_rights.user_erase(user=self.person(username), by=request.user)
        except ValidationError as exc:
            raise DRFValidationError({"username": exc.messages})
        return Response(done)
