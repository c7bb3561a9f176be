"""send_test, delivery_report and purge_deliveries: good input, bad input, and a rerun."""

import csv
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from notifications.management.progress import Progress
from notifications.models import Delivery

from .console_helpers import sent_notification, two_cohorts


def run(name, *args):
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- send_test ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_sends_a_test_email_and_shows_the_providers_answer(smtp_peer):
    out = run("send_test", "email", "ops@example.edu")

    assert "Accepted by the email provider: <test-" in out
    assert [m["To"] for m in smtp_peer.messages] == ["ops@example.edu"]


@pytest.mark.django_db
def test_it_exits_non_zero_with_the_providers_refusal(smtp_peer):
    smtp_peer.refuse.add("gone@example.edu")
    with pytest.raises(CommandError, match=r"did not accept it \(permanent\): SMTP 550"):
        run("send_test", "email", "gone@example.edu")


@pytest.mark.django_db
def test_it_sends_a_test_sms_to_a_local_twilio_and_shows_the_sid(http_peer, settings):
    peer = http_peer(lambda request: (201, {}, {"sid": "SM0123456789", "status": "queued"}))
    settings.TWILIO_API_BASE = peer.url
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"

    out = run("send_test", "sms", "+33612345678")

    assert "Accepted by the sms provider: SM0123456789" in out
    assert peer.requests[0]["form"]["To"] == "+33612345678"


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (["sms", "12345"], "international format"),           # a bad phone number
    (["email", "not-an-address"], "valid email"),
    (["fax", "x"], "Choose a channel with a provider"),
    (["push", "{not json"], "Not a push subscription"),
])
def test_it_refuses_a_bad_channel_or_address(args, message):
    with pytest.raises(CommandError, match=message):
        run("send_test", *args)


# --- delivery_report ------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_reports_a_summary_and_every_delivery_as_csv(staff_user):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, statuses=("sent", "failed"))
    Delivery.objects.filter(status="failed").update(last_error="SMTP 550: refused")
    Delivery.objects.filter(status="sent").update(sent_at=timezone.now())

    summary = run("delivery_report", str(notification.pk))
    rows = list(csv.DictReader(StringIO(run("delivery_report", str(notification.pk), "--csv"))))
    failed = list(csv.DictReader(StringIO(run("delivery_report", str(notification.pk), "--csv",
                                              "--status", "failed"))))

    assert "Recipients: 2, reached: 1 (50%)" in summary and "email  failed 1, sent 1" in summary
    assert [r["status"] for r in rows] == ["sent", "failed"]
    assert failed[0]["error"] == "SMTP 550: refused" and failed[0]["username"] == "s1000002"


@pytest.mark.django_db
def test_it_writes_cells_a_spreadsheet_would_run_as_a_formula_as_text(staff_user):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, statuses=("sent", "failed"))
    first, second = mine.members.order_by("pk")
    first.username, first.email = "-2+3", "=cmd|' /C calc'!A0@example.edu"
    first.save()
    second.username, second.email = "@SUM(A1)", "\tplain@example.edu"
    second.save()
    Delivery.objects.filter(status="failed").update(last_error="+ERR refused")

    rows = list(csv.DictReader(StringIO(run("delivery_report", str(notification.pk), "--csv"))))

    assert [(r["username"], r["email"]) for r in rows] == [
        ("'-2+3", "'=cmd|' /C calc'!A0@example.edu"), ("'@SUM(A1)", "'\tplain@example.edu")]
    assert rows[1]["error"] == "'+ERR refused" and rows[0]["attempts"] == "0"


@pytest.mark.django_db
def test_it_refuses_an_unknown_notification():
    with pytest.raises(CommandError, match="No notification 999"):
        run("delivery_report", "999")


# --- purge_deliveries -----------------------------------------------------------------------

@pytest.mark.django_db
def test_it_purges_old_finished_deliveries_in_batches_and_a_rerun_finds_nothing(staff_user):
    mine, _, other = two_cohorts(staff_user)
    old = sent_notification(mine, other, statuses=("sent", "queued"))
    recent = sent_notification(mine, other, title="Recent")
    Delivery.objects.filter(notification=old).update(created_at=timezone.now() - timedelta(days=400))

    out = run("purge_deliveries", "--older-than", "365", "--batch-size", "1")

    assert "Deleted 1 deliveries older than 365 days" in out
    assert list(Delivery.objects.filter(notification=old).values_list("status", flat=True)) == ["queued"]  # pending kept
    assert recent.deliveries.count() == 2
    assert "Deleted 0 deliveries" in run("purge_deliveries", "--older-than", "365")


@pytest.mark.django_db
@pytest.mark.parametrize("args", [["--older-than", "0"], ["--older-than", "30", "--batch-size", "0"]])
def test_it_refuses_a_bad_retention(args):
    with pytest.raises(CommandError):
        run("purge_deliveries", *args)


# --- help and progress ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["send_batch", "import_users", "send_test", "delivery_report", "purge_deliveries"])
def test_every_command_has_help_with_examples(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        call_command(name, "--help")
    assert exit_.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_it_draws_a_bar_on_a_terminal():
    out = StringIO()
    from django.core.management.base import OutputWrapper

    progress = Progress(OutputWrapper(out), "accepted", tty=True, width=10)
    progress(5, 10)
    progress(10, 10)
    assert "\raccepted [#####.....] 5/10  50%" in out.getvalue()
    assert "\raccepted [##########] 10/10 100%" in out.getvalue()
