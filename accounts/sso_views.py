"""Single sign-on pages: start a sign-in, receive the identity provider's answer, sign out (with single logout).

The protocol work is the libraries' views; these subclasses add what FlashNotify needs: endpoints from the
issuer's discovery document, the same throttle per address as every sign-in door (SignInGuard), a clear
page for a refused sign-in, and the landing page by role.
"""

import logging
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import auth
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from djangosaml2 import views as saml_views
from djangosaml2.utils import get_fallback_login_redirect_url, get_location
from mozilla_django_oidc import views as oidc_views
from rest_framework.exceptions import Throttled
from saml2 import BINDING_HTTP_REDIRECT
from saml2.response import StatusError
from saml2.client_base import LogoutError
from saml2.s_utils import UnsupportedBinding
from saml2.validate import ResponseLifetimeExceed, ToEarly

from .forms import too_many_attempts
from .sso import oidc_discovery, oidc_enabled, saml_enabled, sso_landing_url
from .throttling import SignInGuard

logger = logging.getLogger(__name__)

SAML_SUBJECT = "_saml2_subject_id"  # where djangosaml2 keeps the subject in the SAML session


def refused(request, message=None, status=403):
    """The page of a sign-in that did not happen: why, and the way back."""
    message = message or getattr(request, "sso_refusal", None) or _("The sign-in could not be completed.")
    return render(request, "registration/sso_refused.html", {"message": message}, status=status)


def _guarded(request):
    """Count the attempt against the client address, as the password doors do; None or a refusal page."""
    try:
        SignInGuard(request, "").check()
    except Throttled as exc:
        return refused(request, too_many_attempts(exc).messages[0], status=429)
    return None


class _Configured:
    """The view answers 404 while its protocol is not configured."""

    enabled = None

    def dispatch(self, request, *args, **kwargs):
        if not type(self).enabled():
            raise Http404
        return super().dispatch(request, *args, **kwargs)


# --- OpenID Connect -----------------------------------------------------------------------------

class OIDCLoginView(_Configured, oidc_views.OIDCAuthenticationRequestView):
    """Redirects to the issuer's authorization endpoint (code flow, PKCE, nonce, state)."""

    enabled = staticmethod(oidc_enabled)

    def __init__(self, **kwargs):
        View.__init__(self, **kwargs)  # the library reads its endpoint here; it comes from discovery

    def get(self, request):
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_discovery()["authorization_endpoint"]
        except (requests.RequestException, ValueError, KeyError) as exc:
            logger.warning("OIDC discovery failed: %s", exc)
            return refused(request, _("Your university's sign-in service cannot be reached. Please try again "
                                      "later."), status=503)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class OIDCCallbackView(_Configured, oidc_views.OIDCAuthenticationCallbackView):
    """The issuer's answer: signed in and sent to the inbox or the console, or a page that says why not."""

    enabled = staticmethod(oidc_enabled)

    def get(self, request):
        refusal = _guarded(request)
        if refusal:
            return refusal
        if request.GET.get("error"):
            request.sso_refusal = _("Your university's sign-in service did not sign you in (%(error)s).") % {
                "error": request.GET["error"][:100]}
        try:
            return super().get(request)
        except SuspiciousOperation:
            return refused(request, _("This sign-in was not started here, or was already used. Please sign in "
                                      "again."), status=400)

    def login_failure(self):
        return refused(self.request)

    @property
    def success_url(self):
        return self.request.session.get("oidc_login_next") or sso_landing_url(self.user)


# --- SAML 2.0 -----------------------------------------------------------------------------------

class SAMLLoginView(_Configured, saml_views.LoginView):
    enabled = staticmethod(saml_enabled)


@method_decorator(csrf_exempt, name="dispatch")  # the IdP posts it from its own page, as djangosaml2's view is
class SAMLAcsView(_Configured, saml_views.AssertionConsumerServiceView):
    enabled = staticmethod(saml_enabled)

    def post(self, request, *args, **kwargs):
        return _guarded(request) or super().post(request, *args, **kwargs)

    def custom_redirect(self, user, relay_state, session_info):
        if relay_state in ("", "/", get_fallback_login_redirect_url()):
            return sso_landing_url(user)
        return None


def saml_refused(request, exception=None, status=403, **kwargs):
    """SAML_ACS_FAILURE_RESPONSE_FUNCTION: the page for an assertion that signs no one in."""
    message = getattr(request, "sso_refusal", None)
    if message is None:
        text = str(exception or "")
        if isinstance(exception, (ResponseLifetimeExceed, ToEarly)):
            message = _("This sign-in has expired. Please sign in again.")
        elif "AudienceRestriction" in text:
            message = _("This sign-in was issued for another application (wrong audience).")
        elif isinstance(exception, StatusError):
            message = _("Your university's sign-in service did not sign you in.")
        else:
            message = _("This sign-in could not be verified.")
    return refused(request, message, status=status)


class SAMLMetadataView(_Configured, saml_views.MetadataView):
    enabled = staticmethod(saml_enabled)


@method_decorator(csrf_exempt, name="dispatch")
class SAMLLogoutServiceView(_Configured, saml_views.LogoutView):
    """The IdP's logout answers and requests (single logout started by the IdP or another service)."""

    enabled = staticmethod(saml_enabled)


# --- signing out --------------------------------------------------------------------------------

def _oidc_logout_url(request):
    id_token = request.session.get("oidc_id_token")
    if not (oidc_enabled() and id_token):
        return None
    try:
        endpoint = oidc_discovery().get("end_session_endpoint")
    except (requests.RequestException, ValueError):
        return None
    if not endpoint:
        return None
    return endpoint + "?" + urlencode({
        "id_token_hint": id_token, "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL)),
    })


def _saml_logout_url(request):
    if not saml_enabled() or request.saml_session.get(SAML_SUBJECT) is None:
        return None
    state, client = saml_views.SPConfigMixin().get_state_client(request)
    subject_id = saml_views._get_subject_id(request.saml_session)
    try:
        result = client.global_logout(subject_id)
    except (LogoutError, UnsupportedBinding) as exc:
        logger.info("SAML single logout not available: %s", exc)
        return None
    finally:
        state.sync()
    for logout_info in (result or {}).values():
        if isinstance(logout_info, tuple) and logout_info[0] == BINDING_HTTP_REDIRECT:
            return get_location(logout_info[1])
    return None


@method_decorator(csrf_protect, name="dispatch")
class SignOutView(View):
    """Ends the local session; when the person came through an identity provider that offers single logout,
    the page then sends the browser on to it (OIDC end_session_endpoint, SAML SingleLogoutService)."""

    http_method_names = ["post", "options"]

    def post(self, request):
        idp_logout_url = _oidc_logout_url(request) or _saml_logout_url(request)
        auth.logout(request)
        if idp_logout_url:
            return render(request, "registration/sso_signed_out.html", {"idp_logout_url": idp_logout_url})
        return HttpResponseRedirect(resolve_url(settings.LOGOUT_REDIRECT_URL))
