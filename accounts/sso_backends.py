"""Django authentication backends for single sign-on: the libraries verify, accounts.sso decides who it is.

Each backend answers only its own protocol's callback and only while that protocol is configured, so a
password sign-in never reaches them. A refusal is raised as SignInRefused (PermissionDenied: Django's
`authenticate` stops there) and kept on the request as `sso_refusal`, for the page the view shows.
"""

import logging

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.utils.translation import gettext as _
from djangosaml2.backends import Saml2Backend
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from requests.exceptions import HTTPError

from .sso import OIDC, SAML, Identity, SignInRefused, oidc_discovery, oidc_enabled, saml_enabled, sso_user_sign_in

logger = logging.getLogger(__name__)


def _refuse(request, message):
    request.sso_refusal = message
    raise SignInRefused(message)


def _values(value):
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow (with PKCE and nonce), with endpoints from the issuer's discovery
    document, and an ID token checked for its signature, issuer, audience and expiry."""

    def __init__(self, *args, **kwargs):
        # The library reads its endpoints here; they come from discovery, when a callback arrives.
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        if request is None or not oidc_enabled() or "code" not in request.GET or "state" not in request.GET:
            return None
        try:
            discovery = oidc_discovery()
        except (requests.RequestException, ValueError) as exc:
            logger.warning("OIDC discovery failed: %s", exc)
            _refuse(request, _("Your university's sign-in service cannot be reached. Please try again later."))
        self.OIDC_OP_TOKEN_ENDPOINT = discovery["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = discovery.get("userinfo_endpoint")
        self.OIDC_OP_JWKS_ENDPOINT = discovery["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        try:
            return super().authenticate(request, **kwargs)
        except SuspiciousOperation as exc:
            logger.warning("OIDC sign-in refused: %s", exc)
            _refuse(request, str(exc))
        except HTTPError as exc:
            logger.warning("OIDC token request failed: %s", exc)
            _refuse(request, _("Your university's sign-in service refused the sign-in. Please try again."))

    def _verify_jws(self, payload, key):
        try:
            return jwt.decode(payload, key, algorithms=[self.OIDC_RP_SIGN_ALGO], audience=self.OIDC_RP_CLIENT_ID,
                              issuer=settings.SSO_OIDC_ISSUER, options={"require": ["exp", "iat", "aud", "iss"]})
        except jwt.InvalidAudienceError:
            raise SuspiciousOperation(_("This sign-in was issued for another application (wrong audience)."))
        except jwt.ExpiredSignatureError:
            raise SuspiciousOperation(_("This sign-in has expired. Please sign in again."))
        except jwt.InvalidIssuerError:
            raise SuspiciousOperation(_("This sign-in comes from an identity provider we do not trust."))
        except jwt.PyJWTError:
            raise SuspiciousOperation(_("This sign-in could not be verified."))

    def get_or_create_user(self, access_token, id_token, payload):
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            userinfo = self.get_userinfo(access_token, id_token, payload)
            if userinfo.get("sub") != payload.get("sub"):
                raise SuspiciousOperation(_("This sign-in could not be verified."))
            claims.update(userinfo)
        identity = Identity(
            provider=OIDC,
            institutional_id=str(claims.get(settings.SSO_OIDC_ID_CLAIM) or ""),
            email=claims.get("email") or "",
            email_verified=claims.get("email_verified") in (True, "true"),
            first_name=claims.get("given_name") or "",
            last_name=claims.get("family_name") or "",
            language=claims.get("locale") or "",
            groups=_values(claims.get(settings.SSO_OIDC_GROUPS_CLAIM)),
        )
        try:
            return sso_user_sign_in(identity=identity)
        except SignInRefused as exc:
            _refuse(self.request, exc.message)


class SAMLBackend(Saml2Backend):
    """djangosaml2's backend, after pysaml2 has checked the assertion's signature, audience and lifetime."""

    def authenticate(self, request, session_info=None, attribute_mapping=None, create_unknown_user=True,
                     assertion_info=None, **kwargs):
        if request is None or session_info is None or not saml_enabled():
            return None
        attributes = session_info.get("ava", {})

        def first(name):
            values = attributes.get(name) or []
            return str(values[0]) if values else ""

        name_id = session_info.get("name_id")
        institutional_id = "" if settings.SSO_SAML_ID_ATTRIBUTE == "NameID" else first(settings.SSO_SAML_ID_ATTRIBUTE)
        identity = Identity(
            provider=SAML,
            institutional_id=institutional_id or (getattr(name_id, "text", "") or ""),
            email=first(settings.SSO_SAML_EMAIL_ATTRIBUTE),
            email_verified=settings.SSO_SAML_TRUST_EMAIL,
            first_name=first(settings.SSO_SAML_FIRST_NAME_ATTRIBUTE),
            last_name=first(settings.SSO_SAML_LAST_NAME_ATTRIBUTE),
            language=first(settings.SSO_SAML_LANGUAGE_ATTRIBUTE),
            groups=_values(attributes.get(settings.SSO_SAML_GROUPS_ATTRIBUTE)),
        )
        try:
            return sso_user_sign_in(identity=identity)
        except SignInRefused as exc:
            _refuse(request, exc.message)
