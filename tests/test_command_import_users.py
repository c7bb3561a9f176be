"""manage.py import_users: batches, per-row errors with line numbers, a summary, and a rerun that changes nothing."""

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Cohort, User
from accounts.services import users_upsert


@pytest.fixture
def cohort(db):
    return Cohort.objects.create(code="cs101", name="CS 101")


def write(tmp_path, text):
    path = tmp_path / "users.csv"
    path.write_text(text)
    return str(path)


def run(*args):
    from io import StringIO

    out, err = StringIO(), StringIO()
    call_command("import_users", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


GOOD = "username,email,phone,cohorts\ns1,s1@example.edu,+33612345678,cs101\ns2,s2@example.edu,,cs101\ns3,s3@example.edu,,\n"


def test_it_imports_in_batches_and_a_rerun_changes_nothing(tmp_path, cohort):
    path = write(tmp_path, GOOD)

    out, _ = run(path, "--batch-size", "2")
    assert "3 created, 0 updated, 0 unchanged, 0 invalid" in out
    assert sorted(cohort.members.values_list("username", flat=True)) == ["s1", "s2"]
    assert User.objects.get(username="s1").groups.filter(name="User").exists()

    again, _ = run(path, "--batch-size", "2")
    assert "0 created, 0 updated, 3 unchanged, 0 invalid" in again


@pytest.mark.parametrize("bad_line, reason", [
    ("s4,s4@example.edu,12345,cs101", "phone"),           # a bad phone number
    ("s4,s4@example.edu,,nope", "Unknown cohort(s): nope"),  # an unknown cohort
    (",s4@example.edu,,", "A username is required"),
    ("s1,other@example.edu,,", "already on line 2"),       # the same user twice
])
def test_it_refuses_the_file_with_the_line_and_reason_of_a_bad_row(tmp_path, cohort, bad_line, reason):
    path = write(tmp_path, GOOD + bad_line + "\n")

    with pytest.raises(CommandError, match="1 invalid row"):
        run(path)

    assert not User.objects.exists()


def test_it_reports_the_bad_row_on_stderr_and_imports_the_rest_with_skip_invalid(tmp_path, cohort, capsys):
    path = write(tmp_path, GOOD + "s4,s4@example.edu,555,cs101\n")

    out, err = run(path, "--skip-invalid")

    assert "line 5 (s4): phone:" in err
    assert "3 created, 0 updated, 0 unchanged, 1 invalid" in out
    assert not User.objects.filter(username="s4").exists()


def test_it_checks_without_writing_on_a_dry_run(tmp_path, cohort):
    out, _ = run(write(tmp_path, GOOD), "--dry-run")
    assert "Dry run: 3 created" in out and not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("text, message", [
    ("email,phone\nx@example.edu,\n", "Missing column 'username'"),
    ("username,shoe_size\ns1,42\n", "Unknown column(s): shoe_size"),
])
def test_it_refuses_a_file_with_a_missing_or_unknown_column(tmp_path, text, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(write(tmp_path, text))


@pytest.mark.django_db
def test_it_says_when_the_file_does_not_exist():
    with pytest.raises(CommandError, match="Cannot read /nonexistent.csv"):
        run("/nonexistent.csv")


def test_it_updates_only_what_changed(cohort):
    users_upsert([{"username": "s1", "email": "a@example.edu", "cohorts": "cs101"}])
    report = users_upsert([{"username": "s1", "email": "b@example.edu", "cohorts": "cs101"},
                           {"username": "s2", "email": "c@example.edu"}], first_line=2)
    assert [(r.line, r.action) for r in report.rows] == [(2, "updated"), (3, "created")]
    assert User.objects.get(username="s1").email == "b@example.edu"
