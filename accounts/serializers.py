from django.utils import timezone
from drf_spectacular.contrib import rest_framework_simplejwt as jwt_schema
from rest_framework import exceptions, serializers
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import UntypedToken

from .authentication import RefreshToken, token_check_version
from .models import ApiKey, Cohort, User


class ErrorSerializer(serializers.Serializer):
    """The shape of every error response."""

    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Field name (dotted when nested) to its messages; filled for 400s.")


class CohortCodeField(serializers.SlugRelatedField):
    """A cohort by its code; a code with a NUL byte is refused before it reaches the database
    (PostgreSQL cannot compare text with NUL: the lookup itself would fail)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", "\\x00"))
        return super().to_internal_value(data)


class ApiKeySerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.Scope.choices), allow_empty=False)
    cohorts = CohortCodeField(slug_field="code", many=True, required=False, queryset=Cohort.objects.all())
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "user", "scopes", "cohorts", "expires_at", "last_used_at",
                  "revoked_at", "created_at"]
        read_only_fields = ["prefix", "last_used_at", "revoked_at", "created_at"]

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Choose a time in the future.")
        return value


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]


class CohortSerializer(serializers.ModelSerializer):
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Cohort
        fields = ["code", "name", "member_count", "created_at"]
        read_only_fields = ["created_at"]


class MemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "email"]


class UserRowSerializer(serializers.Serializer):
    """One row of a provisioning request. Values are validated by the service, row by row."""

    username = serializers.CharField(max_length=150, allow_blank=True)
    email = serializers.CharField(required=False, allow_blank=True, max_length=254)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=40)
    language = serializers.CharField(required=False, max_length=5)
    timezone = serializers.CharField(required=False, max_length=64)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=150)
    cohorts = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    is_active = serializers.BooleanField(required=False)


class UsersUpsertSerializer(serializers.Serializer):
    users = serializers.ListField(child=UserRowSerializer(), allow_empty=False, max_length=5000)
    dry_run = serializers.BooleanField(default=False)


class RowResultSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    username = serializers.CharField()
    action = serializers.ChoiceField(choices=["created", "updated", "unchanged", "invalid"])
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class UsersUpsertResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    summary = serializers.DictField(child=serializers.IntegerField())
    rows = RowResultSerializer(many=True)


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField()


# --- tokens -------------------------------------------------------------------------------

def _token_user(token):
    user = User.objects.filter(pk=token.get(jwt_settings.USER_ID_CLAIM)).first()
    if user is None or not user.is_active:
        raise InvalidToken("No active account found for the given token.", code="no_active_account")
    token_check_version(token, user)
    return user


class TokenObtainPairSerializer(jwt_serializers.TokenObtainPairSerializer):
    """Tokens stamped with the user's sign-in version; the username read as the sign-in page reads it."""

    token_class = RefreshToken

    def validate(self, attrs):
        attrs[self.username_field] = User.normalize_username(attrs[self.username_field])
        data = super().validate(attrs)
        if not self.user.password_sign_in_allowed:
            raise exceptions.PermissionDenied(
                "This account signs in through single sign-on; password sign-in is turned off for it "
                "(SSO_USERS_PASSWORD_SIGN_IN).", code="password_sign_in_off")
        return data


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """A refresh token of an older sign-in version (or of an inactive or deleted user) is refused."""

    token_class = RefreshToken

    def validate(self, attrs):
        _token_user(self.token_class(attrs["refresh"]))
        return super().validate(attrs)


class TokenVerifySerializer(jwt_serializers.TokenVerifySerializer):
    """Valid means the API would accept it now: signature, expiry, blacklist, and the user's sign-in version."""

    def validate(self, attrs):
        data = super().validate(attrs)
        _token_user(UntypedToken(attrs["token"]))
        return data


class TokenObtainPairSerializerScheme(jwt_schema.TokenObtainPairSerializerExtension):
    target_class = "accounts.serializers.TokenObtainPairSerializer"


class TokenRefreshSerializerScheme(jwt_schema.TokenRefreshSerializerExtension):
    target_class = "accounts.serializers.TokenRefreshSerializer"


class TokenVerifySerializerScheme(jwt_schema.TokenVerifySerializerExtension):
    target_class = "accounts.serializers.TokenVerifySerializer"


# --- data rights (response shapes, for the schema) -----------------------------------------

class UserExportSerializer(serializers.Serializer):
    """Everything held about one person (accounts.data_rights.user_data_export)."""

    format = serializers.CharField()
    exported_at = serializers.DateTimeField()
    profile = serializers.DictField()
    preferences = serializers.DictField(help_text="Quiet hours, digest hour, language, time zone, and the "
                                                  "category × channel choices.")
    phone_verification = serializers.DictField()
    cohorts = serializers.DictField(help_text="`member` and `manager`: lists of {code, name}.")
    push_subscriptions = serializers.ListField(child=serializers.DictField(),
                                               help_text="The push service's host and a short hash, never the endpoint.")
    api_keys = serializers.ListField(child=serializers.DictField(), help_text="Name, prefix and scopes, never the key.")
    deliveries = serializers.ListField(child=serializers.DictField())
    inbox = serializers.ListField(child=serializers.DictField())
    acknowledgements = serializers.ListField(child=serializers.DictField())
    personalisation = serializers.ListField(child=serializers.DictField(),
                                            help_text="Per-recipient context of personalised batches.")
    sent_notifications = serializers.ListField(child=serializers.DictField())


class UserErasedSerializer(serializers.Serializer):
    """What an erasure changed (accounts.data_rights.user_erase)."""

    username = serializers.CharField(help_text="The anonymous account's name, `erased-<id>`.")
    deliveries = serializers.IntegerField(help_text="Deliveries anonymised (kept, so counts stay true).")
    deliveries_cancelled = serializers.IntegerField(help_text="Of those, pending ones cancelled.")
    inbox_messages = serializers.IntegerField(help_text="Inbox messages whose content was erased.")
    push_subscriptions = serializers.IntegerField()
    api_keys = serializers.IntegerField()
    audiences = serializers.IntegerField(help_text="Notifications whose audience named the person.")
    ledger_entries_kept = serializers.IntegerField(
        help_text="Compliance ledger entries that name the person (who drafted, approved, sent or cancelled an "
                  "emergency alert): kept unchanged, a legal obligation, until LEDGER_RETENTION_YEARS.")
