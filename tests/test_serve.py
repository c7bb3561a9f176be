"""`manage.py serve` (what `make run` starts): two instances side by side on one machine, each with its mail sink."""

import contextlib
import signal
import smtplib
import socket
import subprocess
import sys
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from .peers import BASE_DIR, free_port, wait_until, worker_environment


def accepts(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def test_it_refuses_a_mail_sink_port_that_is_taken_and_names_the_variable(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", taken.getsockname()[1]

        with pytest.raises(CommandError, match="EMAIL_PORT="):
            call_command("serve", "--mail-sink", "--port", free_port())


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_runs_two_instances_each_with_its_mail_sink_on_its_email_port(tmp_path):
    instances = []
    try:
        for n in range(2):
            web_port, mail_port = free_port(), free_port()
            log = tmp_path / f"serve-{n}.log"
            env = worker_environment(PORT=web_port, EMAIL_PORT=mail_port, EMAIL_HOST="127.0.0.1",
                                     PYTHONUNBUFFERED=1)
            process = subprocess.Popen([sys.executable, str(BASE_DIR / "manage.py"), "serve", "--mail-sink"],
                                       cwd=BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
            instances.append((process, web_port, mail_port, log))
        for process, web_port, mail_port, log in instances:
            wait_until(lambda: accepts(mail_port) and accepts(web_port), timeout=60,
                       message=f"web on {web_port} and mail sink on {mail_port}")
            assert urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/v1/health/", timeout=10).status == 200
            with smtplib.SMTP("127.0.0.1", mail_port, timeout=10) as smtp:
                smtp.sendmail("a@example.edu", ["b@example.edu"], f"Subject: to sink {mail_port}\r\n\r\nhello")
            wait_until(lambda: f"to sink {mail_port}" in log.read_text(), timeout=10,
                       message="the sink to print the message")
    finally:
        for process, *_ in instances:
            process.send_signal(signal.SIGTERM)
        for process, *_ in instances:
            process.wait(30)
    assert [process.returncode for process, *_ in instances] == [0, 0]
