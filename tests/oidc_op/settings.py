"""A real OpenID provider for the SSO tests (django-oidc-provider), run by tests/test_sso.py as its own
`runserver` on 127.0.0.1 with its own SQLite file. Its people and their claims come from OP_PEOPLE_FILE
(JSON), and OP_MODE_FILE lets a test make it issue a token for another audience or an expired one."""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_KEY = "oidc-op-test-key-not-for-production-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SITE_URL = os.environ["OP_SITE_URL"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                  "django.contrib.messages", "oidc_provider"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.oidc_op.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [HERE / "templates"],
              "APP_DIRS": True, "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                                   "django.contrib.auth.context_processors.auth"]}}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["OP_DATABASE"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
LOGIN_URL = "/accounts/login/"
# The browser meets FlashNotify on the same host (127.0.0.1), where cookies do not tell ports apart.
SESSION_COOKIE_NAME = "op_sessionid"
CSRF_COOKIE_NAME = "op_csrftoken"
OIDC_USERINFO = "tests.oidc_op.people.userinfo"
OIDC_IDTOKEN_SUB_GENERATOR = "tests.oidc_op.people.sub"
OIDC_IDTOKEN_PROCESSING_HOOK = "tests.oidc_op.people.id_token_hook"
OIDC_EXTRA_SCOPE_CLAIMS = "tests.oidc_op.people.GroupsScope"
