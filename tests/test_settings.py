"""Settings come from the environment; misconfiguration is a system check with a hint."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    # Without the test run's own relaxations (tests/testenv.py), as a real deployment would be.
    relaxed = {"SECRET_KEY", "DEBUG", "REDIS_URL", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE",
               "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE",
               "PUSH_ALLOW_HTTP_ENDPOINTS"}
    environment = {k: v for k, v in os.environ.items() if k not in relaxed}
    environment["DATABASE_URL"] = "sqlite:///" + str(BASE_DIR / "var" / "settings-check.sqlite3")
    environment.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_it_refuses_to_start_in_production_without_a_secret_key():
    result = manage("check", DEBUG="false", ALLOWED_HOSTS="notify.example.edu")
    assert result.returncode != 0
    assert "flashnotify.E001" in result.stderr and "HINT: Set the SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_it_refuses_to_serve_wsgi_without_a_secret_key():
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY",)}
    environment.update(DEBUG="false", ALLOWED_HOSTS="notify.example.edu")
    result = subprocess.run([sys.executable, "-c", "import flashnotify.wsgi"], cwd=BASE_DIR, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "flashnotify.E001" in result.stderr and "refuses to start" in result.stderr


def test_it_runs_with_the_development_key_only_in_debug():
    result = manage("check", DEBUG="true")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("env, check_id", [
    ({"REDIS_URL": "localhost:6379"}, "flashnotify.E006"),
    ({"PORT": "eighty"}, "flashnotify.E003"),
    ({"DATABASE_URL": "mysql://x@y/z"}, "flashnotify.E005"),
    ({"Q_BROKER": "sqs"}, "flashnotify.E007"),
    ({"DELIVERY_RECORD_SECONDS": "soon"}, "flashnotify.E003"),
    ({"Q_TIMEOUT": "60", "DELIVERY_TASK_SECONDS": "90"}, "flashnotify.E008"),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,intranet"}, "flashnotify.E010"),
    ({"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/prometheus"}, "flashnotify.E011"),
    ({"READINESS_WORKER_MAX_AGE_SECONDS": "a minute"}, "flashnotify.E003"),
    ({"READINESS_WORKER_MAX_AGE_SECONDS": "1"}, "flashnotify.E012"),
    ({"RETENTION_DELIVERY_DAYS": "a year"}, "flashnotify.E013"),
    ({"INVITATION_TTL_DAYS": "a week"}, "flashnotify.E003"),
    ({"INVITATION_TTL_DAYS": "0"}, "flashnotify.E014"),
    ({"ONEROSTER_SYNC_MINUTES": "hourly"}, "flashnotify.E020"),
    ({"ONEROSTER_SYNC_MINUTES": "0"}, "flashnotify.E020"),
    ({"ONEROSTER_BASE_URL": "https://sis.example.edu"}, "flashnotify.E021"),
    ({"EMAIL_SESSIONS": "0"}, "flashnotify.E035"),
    ({"SMS_SESSIONS": "100"}, "flashnotify.E035"),
    ({"PUSH_SESSIONS": "many"}, "flashnotify.E003"),
])
def test_it_reports_bad_values_as_checks_with_hints(env, check_id):
    result = manage("check", DEBUG="true", **env)
    assert result.returncode != 0
    assert check_id in result.stderr and "HINT" in result.stderr


def test_it_passes_the_deploy_checks_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="false",
                    SECRET_KEY="a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
                    ALLOWED_HOSTS="notify.example.edu", TWILIO_ACCOUNT_SID="AC0123", TWILIO_AUTH_TOKEN="token",
                    TWILIO_FROM_NUMBER="+15005550006", VAPID_PUBLIC_KEY="public", VAPID_PRIVATE_KEY="private")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
              "ALLOWED_HOSTS": "notify.example.edu"}


@pytest.mark.parametrize("env, check_id", [
    ({"PUSH_ALLOW_HTTP_ENDPOINTS": "true"}, "channels_app.E001"),
    ({"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend", "ANYMAIL_POSTMARK_SERVER_TOKEN": "t"},
     "channels_app.E002"),
    ({"ONEROSTER_BASE_URL": "http://sis.example.edu", "ONEROSTER_TOKEN_URL": "https://sis.example.edu/token",
      "ONEROSTER_CLIENT_ID": "id", "ONEROSTER_CLIENT_SECRET": "secret"}, "flashnotify.E022"),
])
def test_it_fails_the_deploy_checks_with_a_test_escape_or_unauthenticated_receipts(env, check_id):
    result = manage("check", "--deploy", **PRODUCTION, **env)

    assert result.returncode != 0
    assert check_id in result.stderr and "HINT" in result.stderr


def test_it_passes_the_deploy_checks_with_an_esp_and_its_webhook_secret():
    result = manage("check", "--deploy", **PRODUCTION, EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
                    ANYMAIL_POSTMARK_SERVER_TOKEN="t", ANYMAIL_WEBHOOK_SECRET="hook:a-long-random-password")

    assert "channels_app.E00" not in result.stderr


@pytest.mark.parametrize("setting", ["CSRF_FAILURE_VIEW", "REST_FRAMEWORK.EXCEPTION_HANDLER",
                                     "REST_FRAMEWORK.DEFAULT_PARSER_CLASSES"])
def test_it_imports_each_dotted_path_first_in_a_fresh_process(setting):
    # Django's system checks run in the order of a set: the CSRF failure view may be imported before
    # anything imported DRF's views (seen in CI: security.E102 stopped manage.py and every qcluster).
    code = (
        "import django, functools\n"
        "from django.conf import settings\n"
        "from django.utils.module_loading import import_string\n"
        "django.setup()\n"
        f"value = functools.reduce(lambda obj, key: obj[key] if isinstance(obj, dict) else getattr(obj, key), "
        f"{setting.split('.')!r}, settings)\n"
        "for path in value if isinstance(value, list) else [value]:\n"
        "    import_string(path)\n"
    )
    environment = dict(os.environ, DJANGO_SETTINGS_MODULE="flashnotify.settings", DEBUG="true")
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
