"""Importing users and cohort memberships from CSV in the console: nothing written until the file is clean."""

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Cohort, User

IMPORT = "/admin/accounts/user/import/"
CLEAN = (
    "username,email,phone,language,timezone,cohorts\n"
    "s8000001,ada@example.edu,+33612345678,fr,Europe/Paris,cs101\n"
    "s8000002,bob@example.edu,,en,,cs101;ma201\n"
)
DIRTY = CLEAN + "s8000003,not-an-email,555,en,UTC,zz999\n"


def upload(client, text, dry_run):
    data = {"csv_file": SimpleUploadedFile("users.csv", text.encode(), content_type="text/csv")}
    if dry_run:
        data["dry_run"] = "on"
    return client.post(IMPORT, data)


@pytest.fixture
def cohorts(db):
    return [Cohort.objects.create(code=code, name=code) for code in ("cs101", "ma201")]


def test_it_lists_per_row_errors_and_writes_nothing_while_the_file_is_dirty(client, admin_user, cohorts):
    client.force_login(admin_user)

    response = upload(client, DIRTY, dry_run=False)

    assert response.status_code == 200
    errors = {(line, field) for line, _, field, _ in response.context["errors"]}
    assert errors == {(4, "email"), (4, "phone"), (4, "cohorts")}
    assert "nothing was written" in response.content.decode()
    assert not User.objects.filter(username__startswith="s8").exists()


def test_it_dry_runs_a_clean_file_then_imports_it_and_records_it(client, admin_user, cohorts):
    client.force_login(admin_user)

    checked = upload(client, CLEAN, dry_run=True)
    assert checked.context["summary"] == {"created": 2, "updated": 0, "unchanged": 0, "invalid": 0}
    assert not User.objects.filter(username__startswith="s8").exists()

    imported = upload(client, CLEAN, dry_run=False)
    assert imported.context["written"] is True
    ada = User.objects.get(username="s8000001")
    assert (ada.phone, ada.language, ada.timezone) == ("+33612345678", "fr", "Europe/Paris")
    assert sorted(User.objects.get(username="s8000002").cohorts.values_list("code", flat=True)) == ["cs101", "ma201"]
    assert LogEntry.objects.filter(action_flag=ADDITION, object_repr="s8000001", user=admin_user).exists()

    again = upload(client, CLEAN, dry_run=False)
    assert again.context["summary"] == {"created": 0, "updated": 0, "unchanged": 2, "invalid": 0}


def test_it_refuses_a_file_without_a_username_column(client, admin_user):
    client.force_login(admin_user)
    response = upload(client, "email\nx@example.edu\n", dry_run=True)
    assert "Missing column &#x27;username&#x27;" in response.content.decode()
