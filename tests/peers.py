"""Real local peers for tests: an SMTP server, an HTTP server, qcluster worker processes.

Everything listens on 127.0.0.1 only.
"""

import asyncio
import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=30.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class _SMTPHandler:
    def __init__(self, peer):
        self.peer = peer

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.peer.lock:
            self.peer.connections += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.peer.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.peer.hold:
            with self.peer.lock:
                self.peer.held += 1
            while self.peer.hold:
                await asyncio.sleep(0.01)
        if self.peer.delay:
            await asyncio.sleep(self.peer.delay)
        if self.peer.fail_next > 0:
            self.peer.fail_next -= 1
            return "451 4.3.0 try again later"
        with self.peer.lock:
            self.peer.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self.peer.received_at.append(time.monotonic())
            self.peer.sessions.add(id(session))
        return "250 Message accepted"


class SMTPPeer:
    """An aiosmtpd server on 127.0.0.1; `messages` holds what it received (email.message objects)."""

    def __init__(self):
        self.messages = []
        self.received_at = []  # time.monotonic() of each message in `messages`
        self.sessions = set()
        self.refuse = set()
        self.fail_next = 0
        self.delay = 0.0  # seconds before answering DATA: a slow server keeps work in flight
        self.connections = 0  # SMTP sessions opened (EHLO received)
        self.hold = False  # while True, DATA is not answered: the sender is stuck mid-send
        self.held = 0  # messages that arrived while held
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(_SMTPHandler(self), hostname="127.0.0.1", port=self.port)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


class RedisPeer:
    """A redis-server of its own on 127.0.0.1 (no persistence), which a test may restart on the same port."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        def answers():
            try:
                return redis.from_url(self.url, socket_connect_timeout=0.5).ping()
            except redis.RedisError:
                return False

        wait_until(answers, timeout=10, message="redis-server to answer")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    def client(self):
        import redis

        return redis.from_url(self.url)


class HTTPPeer:
    """An HTTP server on 127.0.0.1 that records requests and answers with `responder(request)`.

    `responder` returns (status, headers dict, body bytes or dict).
    """

    def __init__(self, responder=None):
        self.requests = []
        self.responder = responder or (lambda request: (200, {}, b"{}"))
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                    request["form"] = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                peer.requests.append(request)
                status, headers, payload = peer.responder(request)
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload).encode()
                    headers = {"Content-Type": "application/json", **headers}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_database_url():
    """The URL of the database the test run uses, for worker subprocesses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def worker_environment(**overrides):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flashnotify.settings",
        "DATABASE_URL": test_database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "true",
        "Q_CLUSTER_NAME": settings.Q_CLUSTER["name"],
        "LOG_LEVEL": os.environ.get("WORKER_LOG_LEVEL", "WARNING"),
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update({key: str(value) for key, value in overrides.items()})
    return env


class Worker:
    """A real `manage.py qcluster` process (its own process group, so its children die with it)."""

    def __init__(self, **env):
        self.env = worker_environment(**env)
        self.process = None

    def start(self):
        self.log = open(BASE_DIR / "var" / f"worker-{os.getpid()}-{id(self)}.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "qcluster"], env=self.env, cwd=BASE_DIR,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def kill(self):
        """SIGKILL the whole cluster at once, as a machine failure would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the cluster stops its own workers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


# What push hosts resolve to in tests (PUSH_HOST_RESOLVER = "tests.peers.resolve_push_host", set by
# the `push_dns` fixture): there is no DNS here, and a test must be able to make a name resolve to
# 127.0.0.1 (or change its answer between subscribing and sending: DNS rebinding).
PUSH_DNS = {}


def resolve_push_host(host, port):
    if host not in PUSH_DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return list(PUSH_DNS[host])
