"""System checks for settings: misconfiguration is reported with a hint, not a traceback."""

import ipaddress
import os
import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.checks import Error, Tags, Warning, register, run_checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from accounts.models import Cohort, Role
from channels_app.ratelimit import RATE_LIMIT_SETTINGS, configured_rate
from accounts.sso import oidc_enabled, role_map, saml_enabled, saml_problems
from notifications.engine.retention import RETENTION_SETTINGS, ledger_retention_years, retention_days
from notifications.services.estimate import ESTIMATE_RATES_SETTING, estimate_rates_parse

from .cache_tables import missing_cache_tables

INT_VARIABLES = (
    "PORT", "EMAIL_PORT", "Q_WORKERS", "Q_TIMEOUT", "FANOUT_CHUNK_SIZE", "FANOUT_INBOX_PAGE_SIZE",
    "DELIVERY_MAX_ATTEMPTS", "DELIVERY_RETRY_BASE_SECONDS", "DELIVERY_LEASE_SECONDS", "SMS_MAX_SEGMENTS",
    "BREAKER_FAILURE_THRESHOLD", "BREAKER_RESET_SECONDS", "JWT_ACCESS_MINUTES", "DELIVERY_RECORD_EVERY",
    "DELIVERY_TASK_SECONDS", "READINESS_WORKER_MAX_AGE_SECONDS", "INVITATION_TTL_DAYS", "INVITATION_BATCH_SIZE",
    "EMAIL_SESSIONS", "SMS_SESSIONS", "PUSH_SESSIONS",
)


@register(Tags.security, deploy=False)
def check_secret_key(app_configs, **kwargs):
    if settings.SECRET_KEY.startswith(settings.MISSING_SECRET_KEY_PREFIX):
        return [Error(
            "SECRET_KEY is not set and DEBUG is off.",
            hint="Set the SECRET_KEY environment variable to a long random string "
                 "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DEBUG=true for development.",
            id="flashnotify.E001",
        )]
    if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [Error("SECRET_KEY is the development key while DEBUG is off.",
                      hint="Set SECRET_KEY in the environment.", id="flashnotify.E002")]
    return []


@register()
def check_environment_values(app_configs, **kwargs):
    problems = []
    for name in INT_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            try:
                int(value)
            except ValueError:
                problems.append(Error(f"{name}={value!r} is not a whole number.",
                                      hint=f"Set {name} to an integer or unset it to use the default.",
                                      id="flashnotify.E003"))
    value = os.environ.get("DELIVERY_RECORD_SECONDS")
    if value is not None:
        try:
            float(value)
        except ValueError:
            problems.append(Error(f"DELIVERY_RECORD_SECONDS={value!r} is not a number.",
                                  hint="Set it to seconds (1.0 by default) or unset it.", id="flashnotify.E003"))
    if settings.DELIVERY_TASK_SECONDS >= settings.Q_TIMEOUT:
        problems.append(Error(
            f"DELIVERY_TASK_SECONDS={settings.DELIVERY_TASK_SECONDS} is not below Q_TIMEOUT={settings.Q_TIMEOUT}: "
            "a task would be killed mid-chunk instead of handing the rest back.",
            hint="Unset DELIVERY_TASK_SECONDS (half of Q_TIMEOUT) or lower it.", id="flashnotify.E008"))
    for name in ("INVITATION_TTL_DAYS", "INVITATION_BATCH_SIZE"):
        if getattr(settings, name) < 1:
            # A TTL of 0 would send links that are already expired.
            problems.append(Error(f"{name}={getattr(settings, name)} is below 1.",
                                  hint=f"Set {name} to a whole number of at least 1, or unset it for the default.",
                                  id="flashnotify.E014"))
    for name in ("EMAIL_SESSIONS", "SMS_SESSIONS", "PUSH_SESSIONS"):
        if not 1 <= getattr(settings, name) <= 32:
            problems.append(Error(f"{name}={getattr(settings, name)} is not between 1 and 32.",
                                  hint=f"Set {name} to the connections a worker may open at once to the provider "
                                       "(1 sends one message at a time), or unset it for the default.",
                                  id="flashnotify.E035"))
    if settings.LOG_FORMAT not in ("text", "json"):
        problems.append(Warning(f"LOG_FORMAT={settings.LOG_FORMAT!r} is neither 'text' nor 'json'; using text.",
                                hint="Set LOG_FORMAT to text or json.", id="flashnotify.W001"))
    if settings.LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        problems.append(Warning(f"LOG_LEVEL={settings.LOG_LEVEL!r} is not a logging level; using INFO.",
                                hint="Set LOG_LEVEL to DEBUG, INFO, WARNING, ERROR or CRITICAL.",
                                id="flashnotify.W002"))
    if not settings.DEBUG and not settings.ALLOWED_HOSTS:
        problems.append(Error("ALLOWED_HOSTS is empty while DEBUG is off.",
                              hint="Set ALLOWED_HOSTS to the comma-separated host names the site answers to.",
                              id="flashnotify.E004"))
    database_url = settings.DATABASE_URL
    if database_url.split(":", 1)[0] not in settings.SUPPORTED_DATABASE_SCHEMES:
        problems.append(Error(f"DATABASE_URL scheme is not supported: {database_url.split(':', 1)[0]!r}.",
                              hint="Use sqlite:///path or postgres://user@host:port/name.", id="flashnotify.E005"))
    redis_url = settings.REDIS_URL
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        problems.append(Error("REDIS_URL must start with redis://, rediss:// or unix://.",
                              hint="For example REDIS_URL=redis://127.0.0.1:6379/0, or unset it for the embedded default.",
                              id="flashnotify.E006"))
    if settings.Q_BROKER not in ("orm", "redis") or (settings.Q_BROKER == "redis" and not redis_url):
        problems.append(Error(f"Q_BROKER={settings.Q_BROKER!r} cannot be used here.",
                              hint="Q_BROKER is orm, or redis together with REDIS_URL.", id="flashnotify.E007"))
    return problems


@register(Tags.security)
def check_metrics_and_readiness(app_configs, **kwargs):
    """A bad network would open or close /metrics by surprise; a bad directory loses the workers' metrics."""
    problems = []
    for network in settings.METRICS_ALLOWED_NETWORKS:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            problems.append(Error(f"METRICS_ALLOWED_NETWORKS holds {network!r}, which is not a network.",
                                  hint="Comma-separated addresses or CIDRs, e.g. 10.0.0.0/8,127.0.0.1.",
                                  id="flashnotify.E010"))
    if settings.METRICS_TOKEN and len(settings.METRICS_TOKEN) < 16:
        problems.append(Warning("METRICS_TOKEN is shorter than 16 characters.",
                                hint="Use a long random token (python -c 'import secrets; "
                                     "print(secrets.token_urlsafe(32))').", id="flashnotify.W003"))
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory is not None and not (os.path.isdir(directory) and os.access(directory, os.W_OK)):
        problems.append(Error(f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a writable directory.",
                              hint="Create it (empty) before the web server and the workers start, "
                                   "or unset it for single-process metrics.", id="flashnotify.E011"))
    if settings.READINESS_WORKER_MAX_AGE_SECONDS < 5:
        problems.append(Error(
            f"READINESS_WORKER_MAX_AGE_SECONDS={settings.READINESS_WORKER_MAX_AGE_SECONDS} is below 5 seconds.",
            hint="A running cluster reports every second or so; allow for a restart (60 by default).",
            id="flashnotify.E012"))
    return problems


@register()
def check_retention(app_configs, **kwargs):
    """A retention that is not a number would purge by a guess: the purge refuses to run and this says why."""
    problems = []
    for name in RETENTION_SETTINGS:
        try:
            retention_days(name)
        except ImproperlyConfigured as exc:
            problems.append(Error(str(exc), hint=f"Set {name} to a whole number of days (0 keeps forever), or unset "
                                                 "it for the default; until then the retention purge deletes nothing.",
                                  id="flashnotify.E013"))
    return problems


@register()
def check_ledger_retention(app_configs, **kwargs):
    """The compliance ledger is kept at least 7 years: a shorter (or unreadable) retention is refused."""
    raw = os.environ.get("LEDGER_RETENTION_YEARS")
    value = raw if raw and raw.strip() else settings.LEDGER_RETENTION_YEARS
    try:
        int(str(value).strip())
        ledger_retention_years()
    except (ValueError, ImproperlyConfigured):
        return [Error(f"LEDGER_RETENTION_YEARS={value!r} is not a whole number of years of at least 7.",
                      hint="The compliance ledger of emergency alerts is kept at least 7 years: set "
                           "LEDGER_RETENTION_YEARS to 7 or more, or unset it for 7; until then the retention purge "
                           "deletes nothing.", id="flashnotify.E060")]
    return []


@register()
def check_rate_limits(app_configs, **kwargs):
    """A provider's rate that is not a number would hold back every message to it: refuse to start instead."""
    problems = []
    for setting in RATE_LIMIT_SETTINGS.values():
        try:
            configured_rate(setting)
        except ImproperlyConfigured as exc:
            problems.append(Error(str(exc), hint=f"Set {setting} to the provider's rate in messages per second "
                                                 "(for example 50 or 0.5), or 0 or unset for no limit.",
                                  id="flashnotify.E030"))
    return problems


@register()
def check_roster_sync(app_configs, **kwargs):
    """A roster sync that cannot run would silently stop provisioning people; one over plain HTTP leaks its secret."""
    problems = []
    for name in ("ONEROSTER_SYNC_MINUTES", "ONEROSTER_PAGE_SIZE"):
        value = os.environ.get(name)
        if value:
            try:
                valid = int(value) >= 1
            except ValueError:
                valid = False
            if not valid:
                problems.append(Error(f"{name}={value!r} is not a whole number of 1 or more.",
                                      hint=f"Set {name} to a positive whole number, or unset it for the default "
                                           f"({'60 minutes' if name == 'ONEROSTER_SYNC_MINUTES' else '100 records'}).",
                                      id="flashnotify.E020"))
    if not settings.ONEROSTER_BASE_URL:
        return problems
    missing = [name for name in ("ONEROSTER_TOKEN_URL", "ONEROSTER_CLIENT_ID", "ONEROSTER_CLIENT_SECRET")
               if not getattr(settings, name)]
    if missing:
        problems.append(Error(f"ONEROSTER_BASE_URL is set without {', '.join(missing)}.",
                              hint="The sync signs in with OAuth 2 client credentials: set the provider's token URL, "
                                   "client id and secret, or unset ONEROSTER_BASE_URL to turn the sync off.",
                              id="flashnotify.E021"))
    if not settings.DEBUG:
        for name in ("ONEROSTER_BASE_URL", "ONEROSTER_TOKEN_URL"):
            value = getattr(settings, name)
            if value and not value.startswith("https://"):
                problems.append(Error(f"{name}={value!r} is not an https:// URL while DEBUG is off.",
                                      hint="The client secret and everyone's personal data would cross the network "
                                           "in clear: use the provider's https:// URL.", id="flashnotify.E022"))
    return problems


@register()
def check_cap_feed(app_configs, **kwargs):
    """The CAP 1.2 feed's settings: a `sender` the schema and CAP clients accept, a window that is a duration."""
    problems = []
    sender = settings.CAP_SENDER
    if any(c.isspace() or c in ",<&" for c in sender):
        problems.append(Error(f"CAP_SENDER={sender!r} contains a space, a comma, '<' or '&'.",
                              hint="CAP 1.2 forbids them in <sender>: use e.g. alerts@university.example.",
                              id="flashnotify.E050"))
    value = os.environ.get("CAP_FEED_CLOSED_HOURS")
    if value is not None and not value.strip().lstrip("-").isdigit():
        problems.append(Error(f"CAP_FEED_CLOSED_HOURS={value!r} is not a whole number.",
                              hint="Set it to the hours a closed incident stays in /cap/ (24 by default).",
                              id="flashnotify.E051"))
    elif settings.CAP_FEED_CLOSED_HOURS < 0:
        problems.append(Error(f"CAP_FEED_CLOSED_HOURS={settings.CAP_FEED_CLOSED_HOURS} is negative.",
                              hint="Set it to 0 (closed incidents leave /cap/ at once) or more.",
                              id="flashnotify.E051"))
    for name in ("CAP_SENDER_NAME", "CAP_AREA_DESC", "CAP_RESTRICTION"):
        if "\x00" in getattr(settings, name) or not getattr(settings, name).strip():
            problems.append(Error(f"{name} is blank or holds a NUL character.",
                                  hint=f"Set {name} to plain text, or unset it for the default.",
                                  id="flashnotify.E052"))
    return problems


@register(Tags.caches)
def check_cache_tables(app_configs, **kwargs):
    """A database migrated before `migrate` created the cache table would answer 500 on every request."""
    return [Error(f"The database cache table {table!r} does not exist.",
                  hint="Run `python manage.py createcachetable` (a fresh database gets it from "
                       "`python manage.py migrate`).", id="flashnotify.E009")
            for table in missing_cache_tables()]


@register(Tags.security)
def check_single_sign_on(app_configs, **kwargs):
    """SSO settings (README "Single sign-on"): each protocol is off until its identity provider is named."""
    problems = []
    if bool(settings.SSO_OIDC_ISSUER) != bool(settings.OIDC_RP_CLIENT_ID):
        problems.append(Error("OpenID Connect is half configured: SSO_OIDC_ISSUER and SSO_OIDC_CLIENT_ID go together.",
                              hint="Set both (and SSO_OIDC_CLIENT_SECRET) to turn OIDC on, or neither.",
                              id="accounts.E101"))
    if oidc_enabled():
        if not settings.SSO_OIDC_ISSUER.startswith("https://") and not settings.DEBUG:
            problems.append(Error(f"SSO_OIDC_ISSUER={settings.SSO_OIDC_ISSUER!r} is not an https:// URL.",
                                  hint="The issuer URL, as its discovery document names it "
                                       "(https://idp.example.edu/realms/main).", id="accounts.E102"))
        if not settings.OIDC_RP_CLIENT_SECRET:
            problems.append(Error("SSO_OIDC_CLIENT_SECRET is empty.",
                                  hint="The client secret the identity provider gave FlashNotify.", id="accounts.E103"))
        if "openid" not in settings.OIDC_RP_SCOPES.split():
            problems.append(Error(f"SSO_OIDC_SCOPES={settings.OIDC_RP_SCOPES!r} lacks 'openid'.",
                                  hint="For example: openid email profile", id="accounts.E104"))
    if saml_enabled():
        problems.extend(Error(problem, hint="See the README, Single sign-on > SAML 2.0.", id="accounts.E105")
                        for problem in saml_problems())
    entries = [entry for entry in settings.SSO_ROLE_MAP.split(",") if entry.strip()]
    if len(role_map()) != len(entries):
        problems.append(Error(f"SSO_ROLE_MAP={settings.SSO_ROLE_MAP!r} has entries that are not value:Role.",
                              hint=f"Comma-separated idp-value:Role, each Role one of {', '.join(Role.values)}.",
                              id="accounts.E106"))
    if settings.SSO_DEFAULT_ROLE not in Role.values:
        problems.append(Error(f"SSO_DEFAULT_ROLE={settings.SSO_DEFAULT_ROLE!r} is not a role.",
                              hint=f"One of {', '.join(Role.values)}.", id="accounts.E107"))
    return problems


@register()
def check_alert_estimate(app_configs, **kwargs):
    """The estimate before an emergency alert is sent: a bad rate or target would tell a wrong time or cost."""
    problems = []
    try:
        estimate_rates_parse(getattr(settings, ESTIMATE_RATES_SETTING))
    except ImproperlyConfigured as exc:
        problems.append(Error(str(exc), hint="Comma-separated channel=messages per second, for example "
                                             "email=500,sms=100,push=500,inbox=5000.", id="flashnotify.E040"))
    if settings.ALERT_TARGET_MINUTES <= 0:
        problems.append(Error(f"ALERT_TARGET_MINUTES={settings.ALERT_TARGET_MINUTES} is not above 0.",
                              hint="The institution's target, in minutes, to hand an alert to every provider "
                                   "(10 by default).", id="flashnotify.E041"))
    if settings.SMS_PRICE_PER_SEGMENT < 0:
        problems.append(Error(f"SMS_PRICE_PER_SEGMENT={settings.SMS_PRICE_PER_SEGMENT} is negative.",
                              hint="The provider's price of one SMS segment, in SMS_PRICE_CURRENCY.",
                              id="flashnotify.E042"))
    return problems

def refuse_to_start_if_misconfigured():
    """Run the checks a WSGI/ASGI server skips; exit with their hints on an error."""
    errors = [message for message in run_checks(include_deployment_checks=False) if message.is_serious()]
    if errors:
        for error in errors:
            print(f"{error.id}: {error.msg}\n  HINT: {error.hint}", file=sys.stderr)
        raise SystemExit("FlashNotify refuses to start: fix the configuration errors above.")


@register(Tags.database, deploy=False)
def check_emergency_test_cohort(app_configs, **kwargs):
    """EMERGENCY_TEST_COHORT names the test list; a missing cohort makes every Test alert refused. A warning:
    the cohort may be imported after the setting is set. Checked only on a database that exists and is migrated."""
    code = settings.EMERGENCY_TEST_COHORT
    if not code:
        return []
    connection = connections[DEFAULT_DB_ALIAS]
    name = connection.settings_dict.get("NAME")
    if connection.vendor == "sqlite" and (not name or (str(name) != ":memory:" and not os.path.exists(name))):
        return []  # connecting would create an empty database file
    try:
        exists = Cohort.objects.filter(code=code).exists()
    except DatabaseError:
        return []  # not migrated yet, or unreachable: other checks say so
    if exists:
        return []
    return [Warning(f"EMERGENCY_TEST_COHORT={code!r} names no cohort: every Test alert is refused.",
                    hint="Create the cohort of the test list (the people who receive Test alerts) with that code, "
                         "or set EMERGENCY_TEST_COHORT to an existing cohort's code.", id="flashnotify.W045")]
