"""manage.py send_batch: personalised rows or a cohort, checked before anything is sent, resumable by key."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Cohort
from notifications.models import Notification, RecipientContext
from notifications.engine import deliveries_send, notification_fan_out

from .conftest import make_user
from .delivery_helpers import run_queued_tasks

TEMPLATE = ["--category", "grade", "--channels", "email,inbox", "--title", "Your {{ course }} grade",
            "--body", "Dear {{ first_name }}, your grade is {{ grade }}."]


@pytest.fixture
def students(db):
    return [make_user(f"s60000{n:02d}", first_name=f"Student{n}") for n in range(1, 6)]


def csv_file(tmp_path, rows, header="username,first_name,course,grade"):
    path = tmp_path / "batch.csv"
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return str(path)


def good_rows(students):
    return [f"{s.username},{s.first_name},CS101,{10 + i}" for i, s in enumerate(students)]


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("send_batch", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_sends_one_personalised_message_per_row(tmp_path, students, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        out, _ = run(csv_file(tmp_path, good_rows(students)), *TEMPLATE, "--chunk-size", "2")

    notifications = list(Notification.objects.order_by("pk"))
    assert len(notifications) == 3  # 5 rows in parts of 2
    assert "5 recipient(s) in 3 notification(s) (3 new, 0 already accepted)" in out
    assert RecipientContext.objects.count() == 5
    for notification in notifications:
        notification_fan_out(notification.pk)
        deliveries_send(list(notification.deliveries.values_list("pk", flat=True)))
    bodies = {m.to[0]: (m.subject, m.body) for m in mailoutbox}
    assert bodies[students[2].email][0] == "[CS101] Your CS101 grade"  # the academic subject names the course
    assert "Dear Student3, your grade is 12." in bodies[students[2].email][1]
    assert len(mailoutbox) == 5


def test_it_shows_counts_and_the_first_message_on_a_dry_run_and_writes_nothing(tmp_path, students):
    out, _ = run(csv_file(tmp_path, good_rows(students)), *TEMPLATE, "--dry-run")

    assert "People: 5" in out
    assert "email  5 to send" in out and "inbox  5 to send" in out
    assert "[email subject] [CS101] Your CS101 grade" in out
    assert "Dear Student1, your grade is 10." in out
    assert Notification.objects.count() == 0


@pytest.mark.parametrize("bad_row, reason", [
    ("nobody,X,CS101,1", "unknown or inactive user 'nobody'"),
    (",X,CS101,1", "no username"),
    ("s6000001,Again,CS101,1", "s6000001 is already on line 2"),
    ("s6000001,X,CS101,1,extra", "more cell(s) than the header"),
])
def test_it_refuses_the_whole_file_for_a_bad_row_with_its_line_number(tmp_path, students, bad_row, reason):
    rows = good_rows(students)
    rows.insert(2, bad_row)  # line 4 of the file

    with pytest.raises(CommandError, match=r"1 invalid row\(s\); nothing sent"):
        _, err = run(csv_file(tmp_path, rows), *TEMPLATE)

    assert Notification.objects.count() == 0


def test_it_reports_the_line_and_sends_the_rest_with_skip_invalid(tmp_path, students, django_capture_on_commit_callbacks):
    rows = good_rows(students)
    rows.insert(2, "nobody,X,CS101,1")

    with django_capture_on_commit_callbacks():
        out, err = run(csv_file(tmp_path, rows), *TEMPLATE, "--skip-invalid")

    assert "line 4: unknown or inactive user 'nobody'" in err
    assert "Skipped 1 invalid row(s)" in out
    assert sorted(Notification.objects.get().audience["users"]) == sorted(s.username for s in students)


def test_it_refuses_a_file_without_the_username_column(tmp_path, students):
    with pytest.raises(CommandError, match="Missing column 'username'"):
        run(csv_file(tmp_path, ["a@example.edu,1"], header="email,grade"), *TEMPLATE)


def test_it_refuses_a_broken_template_before_reading_the_file(tmp_path, students):
    with pytest.raises(CommandError, match="body: Template error"):
        run(csv_file(tmp_path, good_rows(students)), "--title", "x", "--body", "{% if %}")


def test_a_rerun_with_the_same_file_sends_nothing_twice(tmp_path, students, django_capture_on_commit_callbacks):
    path = csv_file(tmp_path, good_rows(students))
    with django_capture_on_commit_callbacks():
        run(path, *TEMPLATE)
        out, _ = run(path, *TEMPLATE)

    assert Notification.objects.count() == 1
    assert "(0 new, 1 already accepted)" in out


def test_it_sends_to_a_cohort_and_refuses_an_unknown_one(students, django_capture_on_commit_callbacks):
    cohort = Cohort.objects.create(code="cs101", name="CS")
    cohort.members.add(*students[:2])

    with django_capture_on_commit_callbacks():
        out, _ = run("--cohort", "cs101", "--title", "Room change", "--body", "B12", "--idempotency-key", "k1")
        again, _ = run("--cohort", "cs101", "--title", "Room change", "--body", "B12", "--idempotency-key", "k1")
    assert Notification.objects.get().audience == {"cohorts": ["cs101"]}
    assert "already accepted" in again

    with pytest.raises(CommandError, match="Unknown cohort 'zz999'"):
        run("--cohort", "zz999", "--title", "t", "--body", "b")


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    ([], "Give a CSV file or --cohort CODE"),
    (["--cohort", "x", "--notifier", "nope"], "Unknown notifier 'nope'"),
    (["--cohort", "x", "--data", "[1]"], "--data must be a JSON object"),
    (["/nonexistent.csv"], "Cannot read /nonexistent.csv"),
    (["--cohort", "x", "--sender", "ghost"], "Unknown sender 'ghost'"),
])
def test_it_exits_with_a_clear_message_on_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args, "--title", "t", "--body", "b")


def test_it_refuses_a_staff_sender_outside_their_cohorts(tmp_path, students, staff_user):
    with pytest.raises(CommandError, match="not in a cohort you manage"):
        run(csv_file(tmp_path, good_rows(students)), *TEMPLATE, "--sender", staff_user.username)
    assert Notification.objects.count() == 0


def test_it_prints_plain_progress_lines_when_not_on_a_terminal(tmp_path, students, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        out, _ = run(csv_file(tmp_path, good_rows(students)), *TEMPLATE, "--chunk-size", "1")
    assert "accepted: 1/5 (20%)" in out and "accepted: 5/5 (100%)" in out
    assert "\r" not in out


@pytest.mark.parametrize("template, refused", [
    ("{% load log %}{% get_admin_log 10 as log %}{{ log }}", "{% load %} is not allowed"),
    ("{% load log %}{% get_admin_log %}", "{% load %} is not allowed"),
    ("{% include 'base.html' %}", "{% include %} is not allowed"),
    ("{% debug %}", "{% debug %} is not allowed"),
    ("{% url 'inbox' %}", "{% url %} is not allowed"),
])
def test_it_refuses_a_template_that_reaches_beyond_the_row(tmp_path, students, template, refused):
    for args in (["--title", template, "--body", "b"], ["--title", "t", "--body", template, "--dry-run"]):
        part = "title" if args[1] == template else "body"
        with pytest.raises(CommandError) as caught:
            run(csv_file(tmp_path, good_rows(students)), *args)
        assert str(caught.value).startswith(f"--{part}: Template error: {refused} in a batch template")
    assert not Notification.objects.exists()


def test_it_still_allows_the_default_tags_and_filters(tmp_path, students, django_capture_on_commit_callbacks):
    body = "{% if grade|add:0 >= 12 %}Well done{% else %}Keep going{% endif %}, {{ first_name|upper }}."

    with django_capture_on_commit_callbacks(execute=False):
        out, _ = run(csv_file(tmp_path, good_rows(students)), "--title", "t", "--body", body, "--dry-run")

    assert "Keep going, STUDENT1." in out


def queued_tasks_run(on_commit):
    """The path of each queued task, run here as a worker would run it."""
    return [func for func, _ in run_queued_tasks(on_commit)]


def test_it_queues_on_a_rerun_every_accepted_part_whose_fan_out_never_started(
        broker, tmp_path, students, mailoutbox, django_capture_on_commit_callbacks):
    path = csv_file(tmp_path, good_rows(students))
    # Ctrl-C after the parts were accepted and before their fan-outs were queued: the commits
    # happened, the on-commit enqueues never ran.
    with django_capture_on_commit_callbacks(execute=False) as lost:
        run(path, *TEMPLATE, "--chunk-size", "2")
    assert len(lost) == 3 and queued_tasks_run(django_capture_on_commit_callbacks) == []
    assert set(Notification.objects.values_list("status", flat=True)) == {"queued"}

    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run(path, *TEMPLATE, "--chunk-size", "2")

    assert "(0 new, 3 already accepted)" in out
    assert queued_tasks_run(django_capture_on_commit_callbacks).count("notifications.tasks.fan_out") == 3
    assert sorted(m.to[0] for m in mailoutbox) == sorted(s.email for s in students)
    assert Notification.objects.filter(fanned_out_at__isnull=False).count() == 3


def test_it_does_not_queue_on_a_rerun_a_part_already_fanned_out(broker, tmp_path, students, django_capture_on_commit_callbacks):
    path = csv_file(tmp_path, good_rows(students))
    with django_capture_on_commit_callbacks(execute=True):
        run(path, *TEMPLATE)
    queued_tasks_run(django_capture_on_commit_callbacks)
    assert Notification.objects.get().fanned_out_at is not None

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run(path, *TEMPLATE)

    assert callbacks == [] and queued_tasks_run(django_capture_on_commit_callbacks) == []


def test_it_refuses_on_a_dry_run_what_sending_would_refuse_naming_every_argument(tmp_path, students):
    path = csv_file(tmp_path, good_rows(students))

    with pytest.raises(CommandError) as refused:
        run(path, "--dry-run", "--category", "nonsense", "--channels", "fax", "--priority", "bogus",
            "--title", "Room\nchange", "--body", "B12")

    message = str(refused.value)
    assert "--category: Unknown category 'nonsense'" in message
    assert "--channels: Academic does not send on fax (fax: no such channel)" in message
    assert "--priority: Unknown priority 'bogus'" in message
    assert "--title: A title is one line of text: it contains a line break." in message
    assert Notification.objects.count() == 0


def test_it_refuses_a_security_alert_without_severity_on_a_dry_run(students):
    Cohort.objects.create(code="cs101", name="CS").members.add(*students)

    with pytest.raises(CommandError, match=r"--data: .*'severity'"):
        run("--cohort", "cs101", "--notifier", "security", "--title", "Gas leak", "--body", "Leave now.",
            "--dry-run")
    out, _ = run("--cohort", "cs101", "--notifier", "security", "--title", "Gas leak", "--body", "Leave now.",
                 "--data", '{"severity": "high"}', "--dry-run")
    assert "People: 5" in out


def test_it_names_the_line_whose_cell_would_break_the_title(tmp_path, students, django_capture_on_commit_callbacks):
    rows = good_rows(students)
    rows[1] = f'{students[1].username},Student2,"CS101\nBcc: x@y",11'  # a quoted cell with a line break: line 3
    path = csv_file(tmp_path, rows)

    with pytest.raises(CommandError, match=r"1 invalid row\(s\); nothing sent"):
        _, err = run(path, *TEMPLATE, "--dry-run")
    with django_capture_on_commit_callbacks():
        out, err = run(path, *TEMPLATE, "--skip-invalid")

    assert "line 4: title: A title is one line of text: it contains a line break." in err
    assert students[1].username not in Notification.objects.get().audience["users"]
