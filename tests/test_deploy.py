"""The deployment files in deploy/ point at things that exist and run what they say.

No Docker daemon and no systemd run here: the compose file, the Dockerfile, the units and the nginx
example are checked against the project (files, manage.py commands, the variables settings.py reads);
`systemd-analyze verify` checks the units where it is installed; gunicorn really runs with its config;
the image is built only where a Docker daemon answers.
"""

import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from .peers import BASE_DIR, free_port, wait_until, worker_environment

DEPLOY = BASE_DIR / "deploy"
APP_SERVICES = ("migrate", "web", "worker")


def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def variables_read_by(path):
    """Names of the environment variables a Python file reads (env("X"), envint("X", ...), os.environ.get("X"))."""
    text = path.read_text()
    return set(re.findall(r"""\benv\w*\(\s*["']([A-Z][A-Z0-9_]*)["']""", text)) | set(
        re.findall(r"""os\.environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""", text))


def known_variables():
    return variables_read_by(BASE_DIR / "flashnotify" / "settings.py") | variables_read_by(DEPLOY / "gunicorn.conf.py")


def assert_runs_a_manage_py_command(command):
    words = shlex.split(command) if isinstance(command, str) else list(command)
    index = next(i for i, word in enumerate(words) if word.endswith("manage.py"))
    assert (BASE_DIR / words[index]).is_file() or Path(words[index]).name == "manage.py"
    assert words[index + 1] in get_commands(), f"{words[index + 1]} is not a manage.py command"


def unit(name):
    """A systemd unit as {key: [values]} (keys may repeat), sections merged."""
    values = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_it_runs_the_app_services_from_the_dockerfile_and_real_commands():
    services = compose()["services"]
    assert set(services) == {"db", "redis", *APP_SERVICES}
    for name in APP_SERVICES:
        build = services[name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == BASE_DIR
        assert (context / build["dockerfile"]).is_file()
        assert services[name]["image"] == services["web"]["image"]  # one image for every role
    assert_runs_a_manage_py_command(services["migrate"]["command"])
    assert services["migrate"]["command"][2] == "migrate"
    assert_runs_a_manage_py_command(services["worker"]["command"])
    assert services["worker"]["command"][2] == "qcluster"
    assert "command" not in services["web"]  # the image's CMD: gunicorn


def test_it_sets_only_variables_that_the_settings_or_gunicorn_read():
    services, known = compose()["services"], known_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "BEHIND_TLS_PROXY", "API_NUM_PROXIES"} <= known
    for name in APP_SERVICES:
        assert set(services[name]["environment"]) <= known, name
        assert services[name]["environment"]["BEHIND_TLS_PROXY"].endswith("true}")
    example = dict(line.split("=", 1) for line in (DEPLOY / "flashnotify.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) <= known
    # Read alike by systemd, a shell (set -a; . file) and docker run --env-file: no quoting, no spaces.
    assert not [value for value in example.values() if re.search(r"""[\s"'$`]""", value)]


def test_it_starts_the_app_once_the_database_redis_and_migrations_are_ready():
    services = compose()["services"]
    for name in ("db", "redis", "web"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["db"]["condition"] == depends_on["redis"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["stop_signal"] == "SIGTERM"
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] in services["web"]["environment"]["DATABASE_URL"]


def test_it_builds_a_non_root_image_with_compiled_translations_and_collected_static_files():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    build = " ".join(instructions)
    assert "manage.py compilemessages" in build and "manage.py collectstatic --noinput" in build
    for line in instructions:
        if line.startswith("COPY ") and "--from" not in line:
            source = line.split()[1]
            assert (BASE_DIR / source).exists(), source
    cmd = [line for line in instructions if line.startswith("CMD ")][-1]
    words = yaml.safe_load(cmd[4:])  # the JSON form
    assert words[0] == "gunicorn" and (BASE_DIR / words[words.index("--config") + 1]).is_file()
    assert (BASE_DIR / ".dockerignore").is_file()
    assert ".venv" in (BASE_DIR / ".dockerignore").read_text().split()


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker client")
@pytest.mark.slow
def test_it_builds_the_image_where_a_docker_daemon_answers():
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no Docker daemon answers here: the image is not built (its Dockerfile is checked above)")
    subprocess.run(["docker", "build", "-f", "deploy/Dockerfile", "-t", "flashnotify:test", "."], cwd=BASE_DIR,
                   check=True, timeout=1800)


def test_it_starts_the_units_from_real_entry_points_with_a_stop_under_ten_seconds():
    web, worker = unit("flashnotify-web.service"), unit("flashnotify-worker@.service")
    for values in (web, worker):
        assert values["EnvironmentFile"][0] == "/etc/flashnotify/flashnotify.env"
        assert values["KillMode"] == ["mixed"] and values["KillSignal"] == ["SIGTERM"]
        assert values["WorkingDirectory"] == ["/srv/flashnotify"]
    assert int(worker["TimeoutStopSec"][0]) <= 10
    web_command = shlex.split(web["ExecStart"][0])
    assert web_command[0] == "/srv/flashnotify/.venv/bin/gunicorn"
    assert (BASE_DIR / web_command[web_command.index("--config") + 1]).is_file()
    worker_command = shlex.split(worker["ExecStart"][0])
    assert worker_command[0] == "/srv/flashnotify/.venv/bin/python"
    assert_runs_a_manage_py_command(worker_command)
    assert worker_command[2] == "qcluster"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_it_passes_systemd_analyze_verify(tmp_path):
    """The units, with /srv/flashnotify made this checkout, as systemd would load them."""
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    for source in (DEPLOY / "systemd").iterdir():
        text = source.read_text().replace("/srv/flashnotify", str(BASE_DIR))
        text = re.sub(r"(?m)^(User|Group)=.*$", rf"\1={user}", text)
        (tmp_path / source.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "./flashnotify-web.service", "./flashnotify-worker@1.service",
         "./flashnotify-workers.target"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_it_proxies_with_the_headers_the_settings_trust():
    nginx = (DEPLOY / "nginx" / "flashnotify.conf").read_text()
    example = dict(line.split("=", 1) for line in (DEPLOY / "flashnotify.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["BEHIND_TLS_PROXY"] == "true" and example["API_NUM_PROXIES"] == "1"
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in nginx
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    gunicorn_bind = re.search(r'"GUNICORN_BIND", "([^"]+)"', (DEPLOY / "gunicorn.conf.py").read_text()).group(1)
    assert f"server {gunicorn_bind} " in nginx
    assert "listen 443 ssl;" in nginx and "return 301 https://" in nginx
    assert "alias /srv/flashnotify/var/staticfiles/;" in nginx


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_serves_through_gunicorn_with_its_config_behind_a_tls_proxy(tmp_path):
    port = free_port()
    env = worker_environment(DEBUG="false", SECRET_KEY="x" * 50, ALLOWED_HOSTS="notify.example.edu",
                             SECURE_SSL_REDIRECT="true", SECURE_HSTS_SECONDS="3600",
                             BEHIND_TLS_PROXY="true", API_NUM_PROXIES="1", GUNICORN_BIND=f"127.0.0.1:{port}",
                             WEB_CONCURRENCY="1")
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "--config", "deploy/gunicorn.conf.py"],
                              cwd=BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def get(headers):
        # A page, not the health probes: those are exempt from the HTTPS redirect (load balancers call them).
        request = urllib.request.Request(f"http://127.0.0.1:{port}/login/",
                                         headers={"Host": "notify.example.edu", **headers})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            return opener.open(request, timeout=5)
        except urllib.error.HTTPError as error:
            return error

    try:
        wait_until(lambda: server.poll() is not None or "Booting worker" in log.read_text(), timeout=30,
                   message="gunicorn to start")
        assert server.poll() is None, log.read_text()
        wait_until(lambda: _answers(get, {"X-Forwarded-Proto": "https"}), timeout=30, message="an answer")
        behind_proxy = get({"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        plain = get({})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert behind_proxy.status == 200  # https as the proxy says: no redirect ...
    assert behind_proxy.headers["Strict-Transport-Security"].startswith("max-age=3600")  # ... and HSTS
    assert plain.status == 301 and plain.headers["Location"].startswith("https://")
    assert '"203.0.113.9"' in log.read_text()  # the access log, with the forwarded client address
    assert server.returncode == 0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _answers(get, headers):
    try:
        return get(headers).status
    except OSError:
        return False
