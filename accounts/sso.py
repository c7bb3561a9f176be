"""Single sign-on: who an identity provider's answer is, in FlashNotify (one path for OIDC and SAML).

The protocol libraries (mozilla-django-oidc, djangosaml2 + pysaml2) verify the answer; their backends
(accounts/sso_backends.py) turn it into an `Identity` and call `sso_user_sign_in`, which matches,
creates or refuses the person and applies the attributes and roles. The configuration the libraries
need is built here from the SSO_* settings: the OIDC discovery document and the SAML SP config.
"""

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import requests
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import SPConfig

from .models import Role, User
from .roles import CONSOLE_ROLES, console_role

OIDC = "oidc"
SAML = "saml"


class SignInRefused(PermissionDenied):
    """An identity provider's answer that does not sign anyone in; `message` is shown to the person."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


@dataclass
class Identity:
    """What an identity provider says about a person, once its signature and audience are verified."""

    provider: str
    institutional_id: str
    email: str = ""
    email_verified: bool = False
    first_name: str = ""
    last_name: str = ""
    language: str = ""
    groups: list = field(default_factory=list)


# --- configuration -----------------------------------------------------------------------------

def oidc_enabled():
    return bool(settings.SSO_OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def saml_enabled():
    return bool(settings.SSO_SAML_IDP_METADATA)


def sso_providers():
    """The sign-in buttons: (protocol, label, login url name), in a stable order."""
    providers = []
    if oidc_enabled():
        providers.append((OIDC, settings.SSO_OIDC_NAME, "sso-oidc-login"))
    if saml_enabled():
        providers.append((SAML, settings.SSO_SAML_NAME, "sso-saml-login"))
    return providers


def role_map(value=None):
    """SSO_ROLE_MAP ("student:User,staff:Staff") as {idp value (case-folded): role}; bad entries are skipped
    (check accounts.E101 reports them)."""
    mapping = {}
    for entry in (settings.SSO_ROLE_MAP if value is None else value).split(","):
        name, _sep, role = entry.partition(":")
        if name.strip() and role.strip() in Role.values:
            mapping[name.strip().casefold()] = role.strip()
    return mapping


def oidc_discovery():
    """The issuer's discovery document (cached for an hour); raises requests.RequestException or ValueError."""
    key = f"sso:oidc-discovery:{settings.SSO_OIDC_ISSUER}"
    document = cache.get(key)
    if document is None:
        response = requests.get(f"{settings.SSO_OIDC_ISSUER}/.well-known/openid-configuration",
                                timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
        if document.get("issuer", "").rstrip("/") != settings.SSO_OIDC_ISSUER:
            raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}, "
                             f"not {settings.SSO_OIDC_ISSUER!r}")
        cache.set(key, document, 3600)
    return document


def saml_config(request=None):
    """djangosaml2's SAML_CONFIG_LOADER: the service provider, built from the SSO_SAML_* settings."""
    site = settings.SITE_URL if request is None else request.build_absolute_uri("/").rstrip("/")
    metadata = settings.SSO_SAML_IDP_METADATA
    signing = bool(settings.SSO_SAML_KEY_FILE and settings.SSO_SAML_CERT_FILE)
    config = {
        "xmlsec_binary": settings.SSO_SAML_XMLSEC_BINARY,
        "entityid": settings.SSO_SAML_ENTITY_ID,
        "allow_unknown_attributes": True,
        "service": {"sp": {
            "name": "FlashNotify",
            "endpoints": {
                "assertion_consumer_service": [(f"{site}{reverse('saml2_acs')}", BINDING_HTTP_POST)],
                "single_logout_service": [(f"{site}{reverse('saml2_ls')}", BINDING_HTTP_REDIRECT),
                                          (f"{site}{reverse('saml2_ls_post')}", BINDING_HTTP_POST)],
            },
            "want_assertions_signed": True,
            "want_response_signed": False,
            "authn_requests_signed": signing,
            "logout_requests_signed": signing,
            "allow_unsolicited": False,
            "name_id_format_allow_create": False,
        }},
        "metadata": {"remote": [{"url": metadata}]} if metadata.startswith(("https://", "http://"))
        else {"local": [metadata]},
        "accepted_time_diff": 60,
    }
    if signing:
        config["key_file"] = settings.SSO_SAML_KEY_FILE
        config["cert_file"] = settings.SSO_SAML_CERT_FILE
        config["encryption_keypairs"] = [{"key_file": settings.SSO_SAML_KEY_FILE,
                                          "cert_file": settings.SSO_SAML_CERT_FILE}]
    sp_config = SPConfig()
    sp_config.load(config)
    return sp_config


def saml_problems():
    """What stops the SAML configuration from loading (for the system check), or []."""
    problems = []
    metadata = settings.SSO_SAML_IDP_METADATA
    if not metadata.startswith(("https://", "http://")) and not Path(metadata).is_file():
        problems.append(f"SSO_SAML_IDP_METADATA={metadata!r} is neither an http(s) URL nor a readable file.")
    if not Path(settings.SSO_SAML_XMLSEC_BINARY).is_file():
        problems.append(f"{settings.SSO_SAML_XMLSEC_BINARY} does not exist: SAML needs xmlsec1 "
                        "(apt-get install xmlsec1) or SSO_SAML_XMLSEC_BINARY naming it.")
    if bool(settings.SSO_SAML_KEY_FILE) != bool(settings.SSO_SAML_CERT_FILE):
        problems.append("Only one of SSO_SAML_KEY_FILE and SSO_SAML_CERT_FILE is set.")
    for name in ("SSO_SAML_KEY_FILE", "SSO_SAML_CERT_FILE"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            problems.append(f"{name}={path!r} is not a readable file.")
    return problems


# --- the sign-in ---------------------------------------------------------------------------------

def _match(identity):
    user = User.objects.filter(institutional_id=identity.institutional_id).first()
    if user is None and identity.email and identity.email_verified:
        candidates = list(User.objects.filter(email__iexact=identity.email)[:2])
        if len(candidates) > 1:
            raise SignInRefused(_("Several accounts share your email address: ask the service desk to link "
                                  "your university account to one of them."))
        if candidates:
            user = candidates[0]
            if user.institutional_id and user.institutional_id != identity.institutional_id:
                raise SignInRefused(_("Your email address belongs to an account linked to another university "
                                      "identity: ask the service desk."))
    return user


def _roles(identity):
    mapping = role_map()
    return {mapping[group.casefold()] for group in identity.groups if group.casefold() in mapping}


@transaction.atomic
def sso_user_sign_in(*, identity):
    """The person an identity provider vouched for: matched by institutional id, then by verified email,
    or created when SSO_CREATE_USERS is on. Name, email, language and roles follow the provider's answer.

    Raises SignInRefused (a PermissionDenied) with a message for the person; nothing is written then.
    """
    if not identity.institutional_id:
        raise SignInRefused(_("Your university account sent no identifier, so we cannot tell who you are."))
    user = _match(identity)
    roles = _roles(identity)
    created = user is None
    if created:
        if not settings.SSO_CREATE_USERS:
            raise SignInRefused(_("You have no FlashNotify account yet. Ask the service desk to create one; "
                                  "signing in will then work with your university account."))
        user = User(username=_new_username(identity), is_active=True)
        user.set_unusable_password()
        roles = roles or ({settings.SSO_DEFAULT_ROLE} & set(Role.values))
    elif not user.is_active:
        raise SignInRefused(_("Your FlashNotify account is deactivated."))

    user.institutional_id = identity.institutional_id
    user.sso_provider = identity.provider
    if identity.email and (identity.email_verified or not user.email):
        user.email = identity.email
    user.first_name = identity.first_name[:150] or user.first_name
    user.last_name = identity.last_name[:150] or user.last_name
    language = identity.language.split("-")[0].split("_")[0].lower()
    if language in User.Language.values:
        user.language = language
    if roles and not user.is_superuser:
        # The console's Admin grant is kept: the identity provider may raise or lower the other roles.
        keep_admin = not created and user.has_role(Role.ADMIN)
        user.is_staff = keep_admin or bool(roles & set(CONSOLE_ROLES))
    user.save()
    if roles and not user.is_superuser:
        names = roles | ({Role.ADMIN} if user.groups.filter(name=Role.ADMIN).exists() else set())
        others = user.groups.filter(name__in=Role.values).exclude(name__in=names)
        user.groups.remove(*others)
        user.groups.add(*Group.objects.filter(name__in=names))
    return user


def _new_username(identity):
    base = (identity.institutional_id.split("@")[0] or "sso")[:140]
    username = base
    while User.objects.filter(username=username).exists():
        username = f"{base}-{secrets.token_hex(3)}"
    return username


def sso_landing_url(user):
    """Where a person lands after signing in: staff on the console, students on their inbox."""
    if console_role(user) is not None:
        return reverse("admin:index")
    return reverse("inbox")
