"""FlashNotify settings.

Every knob comes from an environment variable with an embedded default that runs on
a fresh machine (SQLite under var/, django-q2's ORM broker, a database cache, SMTP on
localhost). The README lists every variable. Misconfiguration is reported by the
system checks in flashnotify/checks.py, not by a traceback here.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.utils.translation import gettext_lazy

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLASHNOTIFY_VAR_DIR", BASE_DIR / "var"))


def env(name, default=""):
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def envbool(name, default="False"):
    return env(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name, default):
    try:
        return int(env(name, str(default)))
    except ValueError:
        # Reported by flashnotify.checks with a hint; keep the default so the check can run.
        return default


def envfloat(name, default):
    try:
        return float(env(name, str(default)))
    except ValueError:
        return default  # reported by flashnotify.checks, like envint


def envlist(name, default=""):
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", "False")

# A development key is allowed only while DEBUG is on; check flashnotify.E001 refuses to
# start without a real one otherwise (see flashnotify/checks.py).
DEV_SECRET_KEY = "django-insecure-flashnotify-development-key-do-not-use-in-production"
# Without one in production, a random per-process key lets Django start far enough for
# check flashnotify.E001 to refuse with a hint (manage.py commands and wsgi.py run it).
MISSING_SECRET_KEY_PREFIX = "missing-secret-key-"
SECRET_KEY = env("SECRET_KEY") or (DEV_SECRET_KEY if DEBUG else MISSING_SECRET_KEY_PREFIX + secrets.token_urlsafe(40))

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
PORT = envint("PORT", 8000)
SITE_URL = env("SITE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")

INSTALLED_APPS = [
    "accounts.console_config.ConsoleAdminConfig",  # django.contrib.admin with the role-checking site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "anymail",
    "djangosaml2",
    "accounts",
    "channels_app",
    "notifications",  # before django_q: its qcluster command replaces django-q2's own
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "djangosaml2.middleware.SamlSessionMiddleware",  # SAML's own session cookie (request.saml_session)
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.UserLanguageMiddleware",
    "accounts.middleware.UserTimezoneMiddleware",
    "accounts.middleware.PrivateResponseMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "flashnotify.urls"
WSGI_APPLICATION = "flashnotify.wsgi.application"
ASGI_APPLICATION = "flashnotify.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifications.context_processors.inbox",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'flashnotify.sqlite3'}"
SUPPORTED_DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "pgsql")
DATABASE_URL = env("DATABASE_URL", DEFAULT_DATABASE_URL)
DATABASES = {
    "default": dj_database_url.parse(
        # An unsupported scheme is reported by check flashnotify.E005 instead of failing at import.
        DATABASE_URL if DATABASE_URL.split(":", 1)[0] in SUPPORTED_DATABASE_SCHEMES else DEFAULT_DATABASE_URL,
        conn_max_age=envint("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the workers share the file: WAL lets readers go on while a
    # worker writes, and IMMEDIATE transactions take the write lock up front instead of
    # failing with "database is locked" when a read transaction upgrades.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and task queue ---------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
Q_WORKERS = envint("Q_WORKERS", 2)
Q_TIMEOUT = envint("Q_TIMEOUT", 120)
Q_CLUSTER = {
    "name": env("Q_CLUSTER_NAME", "flashnotify"),
    "workers": Q_WORKERS,
    "timeout": Q_TIMEOUT,
    # A task whose worker died comes back after `retry` seconds (ORM broker); it must be
    # longer than the timeout. Retries of deliveries are our own (Delivery.next_attempt_at).
    "retry": Q_TIMEOUT + 30,
    "max_attempts": envint("Q_MAX_ATTEMPTS", 3),
    "save_limit": envint("Q_SAVE_LIMIT", 250),
    "ack_failures": True,
    "catch_up": False,
    "recycle": 500,
    "max_rss": envint("Q_MAX_RSS_KB", 250_000),
    "label": gettext_lazy("Task queue"),  # the console's name for django-q2's tables
    "log_level": env("Q_LOG_LEVEL", "WARNING"),
    "poll": 0.2,
}
# The broker follows REDIS_URL unless Q_BROKER says otherwise: "orm" keeps tasks in the
# database (at-least-once: a killed worker's task comes back) even when Redis serves the cache.
Q_BROKER = env("Q_BROKER", "redis" if REDIS_URL else "orm").lower()
if Q_BROKER == "redis" and REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # django-q2's Redis broker plus delayed tasks, so a retry goes out at its due time.
    Q_CLUSTER["broker_class"] = "notifications.engine.queue.DelayingRedis"
else:
    Q_CLUSTER["orm"] = "default"
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", "flashnotify"),
        }
    }
else:
    # A database cache is shared by every worker process, which the circuit breaker and
    # throttles need; local memory would give each process its own view.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "flashnotify_cache",
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", "flashnotify"),
        }
    }

# --- Auth -------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.sso_backends.OIDCBackend",  # each answers only its own protocol's callback, and only when configured
    "accounts.sso_backends.SAMLBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Single sign-on (accounts/sso.py; README "Single sign-on") ----------------------------
# Each protocol is off until its identity provider is named. People are matched by their institutional
# id, then by a verified email; SSO_ROLE_MAP turns IdP groups or affiliations into roles.
SSO_CREATE_USERS = envbool("SSO_CREATE_USERS", "True")
SSO_USERS_PASSWORD_SIGN_IN = envbool("SSO_USERS_PASSWORD_SIGN_IN", "True")
SSO_ROLE_MAP = env("SSO_ROLE_MAP", "student:User,staff:Staff,faculty:Staff,employee:Staff")
SSO_DEFAULT_ROLE = env("SSO_DEFAULT_ROLE", "User")
# OpenID Connect (mozilla-django-oidc): endpoints come from the issuer's discovery document.
SSO_OIDC_ISSUER = env("SSO_OIDC_ISSUER").rstrip("/")
SSO_OIDC_NAME = env("SSO_OIDC_NAME", "university account (OpenID Connect)")
OIDC_RP_CLIENT_ID = env("SSO_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env("SSO_OIDC_CLIENT_SECRET")
OIDC_RP_SCOPES = env("SSO_OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = env("SSO_OIDC_SIGN_ALGO", "RS256")
SSO_OIDC_ID_CLAIM = env("SSO_OIDC_ID_CLAIM", "sub")
SSO_OIDC_GROUPS_CLAIM = env("SSO_OIDC_GROUPS_CLAIM", "groups")
OIDC_USE_PKCE = True
OIDC_STORE_ID_TOKEN = True  # the id_token_hint of single logout
OIDC_TIMEOUT = envint("SSO_OIDC_TIMEOUT", 10)
OIDC_AUTHENTICATION_CALLBACK_URL = "sso-oidc-callback"
# SAML 2.0 (djangosaml2 + pysaml2, which signs and verifies through the xmlsec1 program).
SSO_SAML_IDP_METADATA = env("SSO_SAML_IDP_METADATA")  # an https:// URL or a file path
SSO_SAML_NAME = env("SSO_SAML_NAME", "university account (SAML)")
SSO_SAML_ENTITY_ID = env("SSO_SAML_ENTITY_ID", f"{SITE_URL}/sso/saml/metadata/")
SSO_SAML_KEY_FILE = env("SSO_SAML_KEY_FILE")
SSO_SAML_CERT_FILE = env("SSO_SAML_CERT_FILE")
SSO_SAML_ID_ATTRIBUTE = env("SSO_SAML_ID_ATTRIBUTE", "eduPersonPrincipalName")  # "NameID": the subject
SSO_SAML_EMAIL_ATTRIBUTE = env("SSO_SAML_EMAIL_ATTRIBUTE", "mail")
SSO_SAML_TRUST_EMAIL = envbool("SSO_SAML_TRUST_EMAIL")
SSO_SAML_GROUPS_ATTRIBUTE = env("SSO_SAML_GROUPS_ATTRIBUTE", "eduPersonAffiliation")
SSO_SAML_FIRST_NAME_ATTRIBUTE = env("SSO_SAML_FIRST_NAME_ATTRIBUTE", "givenName")
SSO_SAML_LAST_NAME_ATTRIBUTE = env("SSO_SAML_LAST_NAME_ATTRIBUTE", "sn")
SSO_SAML_LANGUAGE_ATTRIBUTE = env("SSO_SAML_LANGUAGE_ATTRIBUTE", "preferredLanguage")
SSO_SAML_XMLSEC_BINARY = env("SSO_SAML_XMLSEC_BINARY", "/usr/bin/xmlsec1")
SAML_CONFIG_LOADER = "accounts.sso.saml_config"
SAML_DEFAULT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"  # a redirect: no form leaves the site
SAML_ACS_FAILURE_RESPONSE_FUNCTION = "accounts.sso_views.saml_refused"
SAML_CREATE_UNKNOWN_USER = True  # SSO_CREATE_USERS decides, in accounts.sso
SAML_ATTRIBUTE_MAPPING = {}
SAML_USE_NAME_ID_AS_USERNAME = False

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_ROOT = BASE_DIR / "static" / "root"  # served at the site's root: /favicon.ico

# --- Email ------------------------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = envint("EMAIL_PORT", 1025)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "FlashNotify <notifications@flashnotify.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Connections a worker opens to send one chunk's emails in parallel (SMTP sessions or ESP clients). A provider
# answers each message in tens to hundreds of milliseconds, and a session waits for each answer: the rate of
# one worker on a channel is about sessions ÷ the provider's latency (README, "Provider latency").
EMAIL_SESSIONS = envint("EMAIL_SESSIONS", 12)
ANYMAIL = {
    # Provider keys (e.g. POSTMARK_SERVER_TOKEN) are read by anymail from ANYMAIL_* env vars.
    "WEBHOOK_SECRET": env("ANYMAIL_WEBHOOK_SECRET") or None,
}

# --- SMS (Twilio) -----------------------------------------------------------------------
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER")
TWILIO_API_BASE = env("TWILIO_API_BASE", "https://api.twilio.com")
SMS_MAX_SEGMENTS = envint("SMS_MAX_SEGMENTS", 3)
SMS_SESSIONS = envint("SMS_SESSIONS", 16)  # parallel HTTP keep-alive connections per chunk (see EMAIL_SESSIONS)

# --- Web push ---------------------------------------------------------------------------
VAPID_PUBLIC_KEY = env("VAPID_PUBLIC_KEY")
VAPID_PRIVATE_KEY = env("VAPID_PRIVATE_KEY")
VAPID_SUBJECT = env("VAPID_SUBJECT", "mailto:notifications@flashnotify.localhost")
PUSH_SESSIONS = envint("PUSH_SESSIONS", 16)  # parallel HTTP keep-alive connections per chunk (see EMAIL_SESSIONS)
# Endpoints must be https URLs on a browser's push service (channels_app/push_hosts.py) that resolve to
# public addresses. PUSH_SERVICE_HOSTS adds host names ("*.example.net" for any name below it).
PUSH_SERVICE_HOSTS = envlist("PUSH_SERVICE_HOSTS")
# How push hosts are resolved (a dotted path to a function (host, port) -> [addresses]); tests swap it.
PUSH_HOST_RESOLVER = env("PUSH_HOST_RESOLVER", "channels_app.push_hosts.resolve_host")
# Tests only: accept http(s) endpoints on any host, local addresses included (a deploy check refuses it).
PUSH_ALLOW_HTTP_ENDPOINTS = envbool("PUSH_ALLOW_HTTP_ENDPOINTS")

# --- Inbox -------------------------------------------------------------------------------
# What the inbox channel (channels_app.mixins.ArchiveMixin) hands its rendered messages to: a dotted path.
INBOX_STORE = "notifications.engine.inbox.inbox_store"
# Each user's unread inbox count kept in the cache until their inbox changes: with Redis only (on the
# database cache, reading the cache costs as much as counting).
INBOX_UNREAD_CACHE = bool(REDIS_URL)

# --- Invitations ------------------------------------------------------------------------
# A provisioned person who signs in with a password gets a link to choose it, valid this many days.
INVITATION_TTL_DAYS = envint("INVITATION_TTL_DAYS", 7)
# Invitations of a bulk import handed to the workers per task.
INVITATION_BATCH_SIZE = envint("INVITATION_BATCH_SIZE", 200)

# --- Phone verification -----------------------------------------------------------------
PHONE_CODE_TTL_SECONDS = envint("PHONE_CODE_TTL_SECONDS", 600)
PHONE_CODE_RESEND_SECONDS = envint("PHONE_CODE_RESEND_SECONDS", 60)
PHONE_CODES_PER_DAY = envint("PHONE_CODES_PER_DAY", 5)

# --- Delivery engine --------------------------------------------------------------------
FANOUT_CHUNK_SIZE = envint("FANOUT_CHUNK_SIZE", 500)
# Recipients per fan-out page of an inbox-only notification, whose inbox is written as a set by the page's task
# (notifications.engine.inbox_sets): fewer, larger pages spend less on each page's fixed queries and commit.
# Never smaller than FANOUT_CHUNK_SIZE.
FANOUT_INBOX_PAGE_SIZE = envint("FANOUT_INBOX_PAGE_SIZE", 2500)
DELIVERY_MAX_ATTEMPTS = envint("DELIVERY_MAX_ATTEMPTS", 5)
DELIVERY_RETRY_BASE_SECONDS = envint("DELIVERY_RETRY_BASE_SECONDS", 30)
DELIVERY_RETRY_MAX_SECONDS = envint("DELIVERY_RETRY_MAX_SECONDS", 3600)
# A delivery claimed by a worker that has not finished within the lease is taken back.
DELIVERY_LEASE_SECONDS = envint("DELIVERY_LEASE_SECONDS", Q_TIMEOUT + 60)
# A queued delivery whose task has not run within this delay is enqueued again
# (the Redis broker loses the tasks of a killed worker).
DELIVERY_STALE_SECONDS = envint("DELIVERY_STALE_SECONDS", 300)
# Outcomes are written while a chunk is sent, every N messages or T seconds (whichever first):
# what a killed worker can lose, and how often a running task looks for a cancel.
DELIVERY_RECORD_EVERY = envint("DELIVERY_RECORD_EVERY", 25)
DELIVERY_RECORD_SECONDS = envfloat("DELIVERY_RECORD_SECONDS", 1.0)
# A chunk's channels are sent at the same time, each by a thread of its own (false: one after the other):
# each waits for its own provider's answers, not for the other channels' too.
DELIVERY_PARALLEL_CHANNELS = envbool("DELIVERY_PARALLEL_CHANNELS", "true")
# A task stops taking messages after this long and hands the rest back to the queue,
# well before Q_TIMEOUT kills it.
DELIVERY_TASK_SECONDS = envint("DELIVERY_TASK_SECONDS", max(Q_TIMEOUT // 2, 1))
# After a hard bounce or a complaint on an address, that channel is skipped ("suppressed") for the
# user for this many days, except for mandatory (security) notifications; 0 turns it off.
DELIVERY_SUPPRESSION_DAYS = envint("DELIVERY_SUPPRESSION_DAYS", 30)
BREAKER_FAILURE_THRESHOLD = envint("BREAKER_FAILURE_THRESHOLD", 5)
BREAKER_RESET_SECONDS = envint("BREAKER_RESET_SECONDS", 60)
# Most messages per second handed to each provider, by all workers together (channels_app/ratelimit.py);
# empty or 0: no limit. Kept as given: one that is not a number is check flashnotify.E030.
EMAIL_RATE_LIMIT = env("EMAIL_RATE_LIMIT")
SMS_RATE_LIMIT = env("SMS_RATE_LIMIT")
PUSH_RATE_LIMIT = env("PUSH_RATE_LIMIT")
# Retention: finished deliveries and inbox messages older than this many days are purged once a day
# (0 keeps them forever). Kept as given: notifications.engine.retention reads them, and one that is not
# a number stops the purge (nothing is deleted) while check flashnotify.E010 reports it.
RETENTION_DELIVERY_DAYS = env("RETENTION_DELIVERY_DAYS", "365")
RETENTION_INBOX_DAYS = env("RETENTION_INBOX_DAYS", "730")

# --- Emergency alerting (issue 17) --------------------------------------------------------
# A free-text emergency alert waits for a second person with the emergency permission to approve it;
# one sent from an incident template goes at once.
EMERGENCY_TWO_PERSON_RULE = envbool("EMERGENCY_TWO_PERSON_RULE", "True")
# The code of the cohort a Test alert goes to (and only to); without one, a Test alert is refused.
EMERGENCY_TEST_COHORT = env("EMERGENCY_TEST_COHORT")
# The estimate before sending: a warning when handing everything to the providers would take longer.
ALERT_TARGET_MINUTES = envint("ALERT_TARGET_MINUTES", 10)
# The price of one SMS segment, for the estimate's cost.
SMS_PRICE_PER_SEGMENT = envfloat("SMS_PRICE_PER_SEGMENT", 0.0083)
SMS_PRICE_CURRENCY = env("SMS_PRICE_CURRENCY", "USD")
# The estimate's throughput, in messages per second, of a channel whose provider has no rate limit
# (EMAIL_RATE_LIMIT, SMS_RATE_LIMIT, PUSH_RATE_LIMIT); the inbox has none. Checked by flashnotify.E040.
ALERT_ESTIMATE_RATES = env("ALERT_ESTIMATE_RATES", "email=500,sms=100,push=500,inbox=5000")
# Bounds of a per-notification escalation delay, in minutes.
ESCALATION_DELAY_MIN_MINUTES = envint("ESCALATION_DELAY_MIN_MINUTES", 1)
ESCALATION_DELAY_MAX_MINUTES = envint("ESCALATION_DELAY_MAX_MINUTES", 24 * 60)
# The compliance ledger of emergency alerts is kept this many years (at least 7).
LEDGER_RETENTION_YEARS = envint("LEDGER_RETENTION_YEARS", 7)
# `manage.py flush` empties the ledger only with this on (the test suite's environment turns it on); the
# database's triggers refuse otherwise (notifications/ledger_db.py).
LEDGER_FLUSH_ALLOWED = envbool("LEDGER_FLUSH_ALLOWED", "False")

# --- CAP 1.2 feed of emergency alerts (/cap/) ---------------------------------------------
# The CAP `sender`: unique to this system, no spaces, commas, "<" or "&" (checked by flashnotify.E050).
CAP_SENDER = env("CAP_SENDER", f"flashnotify@{urlsplit(SITE_URL).hostname or 'localhost'}")
CAP_SENDER_NAME = env("CAP_SENDER_NAME", "FlashNotify")
# Every alert's <area><areaDesc>: the campus the alerts concern.
CAP_AREA_DESC = env("CAP_AREA_DESC", "Campus")
# An incident's documents of a restricted (not public) incident say who they are for (<restriction>).
CAP_RESTRICTION = env("CAP_RESTRICTION", "For the campus community only: not for public redistribution.")
# The Atom index lists open incidents and those whose all-clear was sent within this many hours.
CAP_FEED_CLOSED_HOURS = envint("CAP_FEED_CLOSED_HOURS", 24)

# --- Roster sync (OneRoster 1.2 REST) ----------------------------------------------------
# With a base URL, a django-q2 schedule reads the provider's users, classes and enrollments every
# ONEROSTER_SYNC_MINUTES and imports them (accounts.roster). Checked by flashnotify.E020-E022.
ONEROSTER_BASE_URL = env("ONEROSTER_BASE_URL").rstrip("/")
ONEROSTER_TOKEN_URL = env("ONEROSTER_TOKEN_URL")
ONEROSTER_CLIENT_ID = env("ONEROSTER_CLIENT_ID")
ONEROSTER_CLIENT_SECRET = env("ONEROSTER_CLIENT_SECRET")
ONEROSTER_SCOPE = env("ONEROSTER_SCOPE", "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly")
ONEROSTER_SYNC_MINUTES = envint("ONEROSTER_SYNC_MINUTES", 60)
ONEROSTER_PAGE_SIZE = envint("ONEROSTER_PAGE_SIZE", 100)

# --- Metrics and readiness ------------------------------------------------------------
# /metrics (Prometheus) answers only a scraper that passes every condition set here: the bearer
# token, and an address inside one of the networks (CIDRs). With neither set it answers 404.
METRICS_TOKEN = env("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = envlist("METRICS_ALLOWED_NETWORKS")
# prometheus_client reads it from the environment itself (at import); set it for gunicorn and every
# qcluster of a machine to one directory, emptied before they start. Unset: single-process metrics.
# A value that is not a writable directory (empty included) is reported by check flashnotify.E011;
# until it is fixed the metrics stay per process, instead of prometheus_client failing at import.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR is not None and not (
        os.path.isdir(PROMETHEUS_MULTIPROC_DIR) and os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK)):
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # prometheus_client reads the environment itself
# Readiness fails when no worker cluster has reported for longer than this.
READINESS_WORKER_MAX_AGE_SECONDS = envint("READINESS_WORKER_MAX_AGE_SECONDS", 60)

# --- API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",  # simplejwt's, ending with the user's sign-in version
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "flashnotify.api_schema.AutoSchema",
    "DEFAULT_PARSER_CLASSES": ["flashnotify.api_parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.AnonThrottle", "accounts.throttling.UserThrottle"],
    "EXCEPTION_HANDLER": "flashnotify.api_errors.api_exception_handler",
    # Proxies in front of the app whose X-Forwarded-For is trusted for throttling; 0: the socket's address.
    "NUM_PROXIES": envint("API_NUM_PROXIES", 0),
}
# Requests per period per client (see accounts/throttling.py); "login" counts sign-in attempts per IP
# at every door (API token, /login/, /admin/login/), "password_reset" reset requests per IP.
API_THROTTLE_RATES = {
    "anon": env("API_THROTTLE_ANON", "120/min"),
    "user": env("API_THROTTLE_USER", "3000/min"),
    "login": env("API_THROTTLE_LOGIN", "20/min"),
    "api_key_failure": env("API_THROTTLE_KEY_FAILURES", "20/min"),
    "password_reset": env("PASSWORD_RESET_THROTTLE", "10/hour"),
}
# After this many failed sign-ins for one username at any door (or bad secrets for one API key
# prefix) in a row, the account (or key) is refused for LOCKOUT_SECONDS, whoever asks.
LOCKOUT_FAILURES = envint("LOCKOUT_FAILURES", 5)
LOCKOUT_SECONDS = envint("LOCKOUT_SECONDS", 900)
# last_used_at of an API key is written at most once per this many seconds.
API_KEY_USAGE_WRITE_SECONDS = envint("API_KEY_USAGE_WRITE_SECONDS", 60)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=envint("JWT_ACCESS_MINUTES", 5)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=envint("JWT_REFRESH_DAYS", 1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FlashNotify API",
    "DESCRIPTION": "Send university notifications and read their deliveries. Authenticate with a JWT "
                   "(`Authorization: Bearer <access>`), an API key (`Authorization: Api-Key <key>`) or "
                   "the site's session (CSRF token required on writes). Every error has the shape "
                   "`{status, code, message, errors}`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "notifications.models.Delivery.Status",
        "NotificationStatusEnum": "notifications.models.Notification.Status",
        "ChannelEnum": "channels_app.constants.Channel",
        "CategoryEnum": "channels_app.constants.Category",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "flashnotify.api_schema.add_webhooks",
    ],
}

# --- Security ---------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", str(not DEBUG))
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", str(not DEBUG))
# The IdP posts its answer from another site: the SAML cookie must cross sites, which needs https.
SAML_SESSION_COOKIE_SAMESITE = "None" if SESSION_COOKIE_SECURE else "Lax"
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", str(not DEBUG))
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
# Load balancers and Prometheus call the probes on the app's own port, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/", r"^metrics$"]
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", str(not DEBUG))
if envbool("BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_COOKIE_HTTPONLY = True  # the pages' script reads the token from the form, never the cookie
CSRF_FAILURE_VIEW = "flashnotify.error_pages.csrf_failure"  # the site's styled 403 page; JSON under /api/
# Content-Security-Policy (django-csp): scripts, styles and workers from this site only, no inline code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF],
        "manifest-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env("LOG_FORMAT", "text").lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "text"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL if LOG_LEVEL in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO"},
    "loggers": {
        "django-q": {"level": env("Q_LOG_LEVEL", "WARNING")},
        "xmlschema": {"level": "WARNING"},  # pysaml2's schema loader announces every schema at INFO
    },
}
