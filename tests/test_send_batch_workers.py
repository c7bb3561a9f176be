"""send_batch end to end: a few hundred personalised rows to a local SMTP server through real workers,
and an interrupted run resumed with the same key, each message sent exactly once."""

from collections import Counter
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from accounts.models import Role, User
from notifications.services import batches
from notifications.models import Delivery, Notification

from .conftest import BROKERS
from .peers import wait_until

ROWS = 300


def make_students(count):
    users = User.objects.bulk_create([
        User(username=f"s7{n:06d}", email=f"s7{n:06d}@students.example.edu", first_name=f"First{n}")
        for n in range(count)
    ])
    Group.objects.get(name=Role.USER).user_set.add(*User.objects.filter(username__startswith="s7"))
    return users


def write_csv(tmp_path, users):
    path = tmp_path / "grades.csv"
    path.write_text("username,first_name,grade\n" + "".join(f"{u.username},{u.first_name},{i % 20}\n"
                                                            for i, u in enumerate(users)))
    return str(path)


ARGS = ["--category", "grade", "--channels", "email", "--title", "Your grade",
        "--body", "Dear {{ first_name }}, your grade is {{ grade }}.", "--chunk-size", "100",
        "--idempotency-key", "grades-2026"]


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_delivers_a_few_hundred_personalised_rows_through_real_workers(broker, smtp_peer, workers, tmp_path):
    users = make_students(ROWS)
    path = write_csv(tmp_path, users)
    workers()

    call_command("send_batch", path, *ARGS, "--wait", "120", stdout=StringIO())

    wait_until(lambda: len(smtp_peer.messages) >= ROWS, timeout=120, message=f"{ROWS} emails")
    by_address = {m["To"]: m.get_body(("plain",)).get_content() for m in smtp_peer.messages}
    assert len(smtp_peer.messages) == ROWS == len(by_address)
    assert "Dear First7, your grade is 7." in by_address[users[7].email]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    wait_until(lambda: set(Notification.objects.values_list("status", flat=True)) == {"sent"},
               message="every part marked sent")


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_interrupted_run_resumed_with_the_same_key_sends_each_message_once(broker, smtp_peer, workers, tmp_path,
                                                                               monkeypatch):
    users = make_students(250)
    path = write_csv(tmp_path, users)
    workers()
    real_send, calls = batches.notification_send, []

    def interrupted_after_two_parts(**kwargs):
        calls.append(kwargs["idempotency_key"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the machine going down, mid-file
        return real_send(**kwargs)

    monkeypatch.setattr(batches, "notification_send", interrupted_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        call_command("send_batch", path, *ARGS, stdout=StringIO())
    assert Notification.objects.count() == 2
    monkeypatch.setattr(batches, "notification_send", real_send)

    out = StringIO()
    call_command("send_batch", path, *ARGS, stdout=out)
    assert "(1 new, 2 already accepted)" in out.getvalue()

    wait_until(lambda: len(smtp_peer.messages) >= 250, timeout=120, message="250 emails")
    wait_until(lambda: not Delivery.objects.filter(status__in=Delivery.PENDING_STATUSES).exists(),
               message="no pending delivery")
    received = Counter(m["To"] for m in smtp_peer.messages)
    assert len(received) == 250 and set(received.values()) == {1}
    assert Delivery.objects.filter(send_count=1).count() == 250
