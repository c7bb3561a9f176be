from django.contrib.auth import views as auth_views
from django.urls import path

from . import sso_views, views
from .forms import SignInForm

# Reachable without signing in, on purpose: they are how one signs in (tests/test_sso.py holds every sso/
# route to this list). Each answers 404 while its protocol is not configured.
PUBLIC_SSO_PATHS = (
    "sso/oidc/login/", "sso/oidc/callback/", "sso/saml/login/", "sso/saml/acs/", "sso/saml/metadata/",
    "sso/saml/ls/", "sso/saml/ls/post/",
)

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=SignInForm),
         name="login"),
    path("logout/", sso_views.SignOutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("phone/", views.phone_verify, name="phone-verify"),
    path("invitation/<str:token>/", views.invitation, name="invitation"),
    # Single sign-on (accounts/sso_views.py), all in PUBLIC_SSO_PATHS.
    path("sso/oidc/login/", sso_views.OIDCLoginView.as_view(), name="sso-oidc-login"),
    path("sso/oidc/callback/", sso_views.OIDCCallbackView.as_view(), name="sso-oidc-callback"),
    path("sso/saml/login/", sso_views.SAMLLoginView.as_view(), name="sso-saml-login"),
    path("sso/saml/acs/", sso_views.SAMLAcsView.as_view(), name="saml2_acs"),
    path("sso/saml/metadata/", sso_views.SAMLMetadataView.as_view(), name="saml2_metadata"),
    path("sso/saml/ls/", sso_views.SAMLLogoutServiceView.as_view(), name="saml2_ls"),
    path("sso/saml/ls/post/", sso_views.SAMLLogoutServiceView.as_view(), name="saml2_ls_post"),
]
