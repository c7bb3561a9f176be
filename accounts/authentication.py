"""How API requests authenticate: `Authorization: Api-Key <prefix>.<secret>` for integrations, and
JWTs (`Bearer <access>`) that end with the user's sign-in version."""

import hmac
import logging

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework_simplejwt import authentication as jwt_authentication
from rest_framework_simplejwt import tokens as jwt_tokens
from rest_framework_simplejwt.exceptions import InvalidToken

from .models import ApiKey
from .throttling import KeyFailureThrottle, Lockout

logger = logging.getLogger(__name__)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates as the key's user; `request.auth` is the ApiKey (its scopes and cohorts apply).

    A revoked or expired key, or a key of an inactive user, is refused. Failed attempts are
    throttled per client address, and repeated bad secrets for one key prefix lock that
    prefix out for a while. `last_used_at` is written at most once per
    API_KEY_USAGE_WRITE_SECONDS per key, not on every request.
    """

    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Api-Key header: expected `Api-Key <key>`.")
        try:
            raw = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid Api-Key header: the key must be ASCII.")
        failures = KeyFailureThrottle(request)
        failures.check()
        prefix = raw.split(".", 1)[0][: ApiKey.PREFIX_LENGTH]
        lockout = Lockout("api-key", prefix)
        lockout.check()
        key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.hashed_key, ApiKey.hash(raw)):
            failures.record_failure()
            if key is not None:
                lockout.record_failure()
            logger.warning("refused an API key attempt", extra={"api_key_prefix": prefix})
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
        if key.expires_at is not None and key.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This API key has expired.", code="api_key_expired")
        if not key.user.is_active:
            raise exceptions.AuthenticationFailed("The user of this API key is inactive.", code="user_inactive")
        self._touch(key)
        return key.user, key

    def authenticate_header(self, request):
        return self.keyword

    @staticmethod
    def _touch(key):
        # cache.add is atomic in every backend: only one request per window writes the row.
        if cache.add(f"api-key-used:{key.pk}", 1, settings.API_KEY_USAGE_WRITE_SECONDS):
            key.last_used_at = timezone.now()
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=key.last_used_at)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Api-Key <key>`, the key as shown once at its creation."}


# --- JWT ----------------------------------------------------------------------------------

VERSION_CLAIM = "ver"


class RefreshToken(jwt_tokens.RefreshToken):
    """simplejwt's refresh token, stamped with the user's `auth_version` (copied into its access tokens
    and kept when it rotates)."""

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        token[VERSION_CLAIM] = user.auth_version
        return token


def token_check_version(token, user):
    """Refuse (401) a token issued before the user's password changed, their account was deactivated
    or they were signed out everywhere. A token without the claim was issued at version 0."""
    if token.get(VERSION_CLAIM, 0) != user.auth_version:
        raise InvalidToken("This token was revoked (new password, deactivated account or signed out "
                           "everywhere); sign in again.", code="token_revoked")


class JWTAuthentication(jwt_authentication.JWTAuthentication):
    """simplejwt's authentication, refusing tokens of an older sign-in version."""

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        token_check_version(validated_token, user)
        return user


class JWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.JWTAuthentication"
