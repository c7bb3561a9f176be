import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Start the web server and a django-q2 worker together; Ctrl-C stops both.\n\n"
        "Examples:\n  manage.py serve\n  manage.py serve --mail-sink   (also a local SMTP server that prints mail)\n"
        "  PORT=8001 EMAIL_PORT=1026 manage.py serve --mail-sink   (a second instance beside the first)"
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--mail-sink", action="store_true",
                            help="Run a local SMTP server on EMAIL_HOST:EMAIL_PORT (where the app sends mail) "
                                 "that prints what it receives; set EMAIL_PORT to run two instances side by side.")

    def handle(self, *args, port, mail_sink, **options):
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = []
        if mail_sink:
            self.check_free(settings.EMAIL_HOST, settings.EMAIL_PORT, "EMAIL_PORT")
            commands.append(("mail", [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Debugging",
                                      "-l", f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"]))
        commands.append(("worker", manage + ["qcluster"]))
        commands.append(("web", manage + ["runserver", f"127.0.0.1:{port}", "--noreload"]))
        self.check_free("127.0.0.1", port, "PORT")
        processes = []
        for name, command in commands:
            processes.append((name, subprocess.Popen(command, start_new_session=True, env=os.environ.copy())))
            self.stdout.write(f"started {name} (pid {processes[-1][1].pid})")
        self.stdout.write(f"FlashNotify on http://127.0.0.1:{port}/  (admin: /admin/)  Ctrl-C stops everything.")
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, process in processes:
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping the others")
                        stopping = True
                time.sleep(0.5)
        finally:
            for _, process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for _, process in processes:
                try:
                    process.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            self.stdout.write("stopped")

    @staticmethod
    def check_free(host, port, variable):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is free
            try:
                sock.bind((host, port))
            except OSError as error:
                raise CommandError(f"{host}:{port} is not free ({error.strerror}): another instance may be running; "
                                   f"choose another port with {variable}=...") from None
