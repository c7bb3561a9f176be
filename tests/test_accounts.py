import pytest
from django.core.exceptions import ValidationError

from accounts.models import User

from .conftest import make_user


@pytest.mark.django_db
def test_it_normalises_a_valid_phone_number_to_e164():
    user = User(username="s1", email="s1@example.edu", phone="+33 6 12 34 56 78", timezone="Europe/Paris")
    user.full_clean(exclude=["password"])
    assert user.phone == "+33612345678"


@pytest.mark.django_db
@pytest.mark.parametrize("field, value, message", [
    ("phone", "12345", "international format"),
    ("phone", "+33 6 12", "not a valid phone number"),
    ("email", "not-an-email", "valid email"),
    ("timezone", "Mars/Olympus", "not a known time zone"),
])
def test_it_refuses_bad_contact_details_in_full_clean(field, value, message):
    user = User(username="s1", **{"email": "s1@example.edu", field: value})
    with pytest.raises(ValidationError) as error:
        user.full_clean(exclude=["password"])
    assert message in " ".join(error.value.message_dict[field])


@pytest.mark.django_db
def test_it_shows_a_bad_phone_number_as_a_field_error_in_the_admin(client, admin_user):
    student = make_user("s1000009")
    client.force_login(admin_user)
    form = {
        "username": student.username, "email": "bad-email", "phone": "555", "language": "en", "timezone": "UTC",
        "digest_hour": 18, "is_active": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00",
    }
    response = client.post(f"/admin/accounts/user/{student.pk}/change/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "international format" in " ".join(errors["phone"])
    assert "valid email" in " ".join(errors["email"])
    student.refresh_from_db()
    assert student.phone == "" and student.email.endswith("@students.example.edu")


@pytest.mark.django_db
def test_it_creates_the_four_roles_with_their_permissions():
    from django.contrib.auth.models import Group

    groups = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert set(groups) >= {"Admin", "Staff", "User", "API_User"}
    assert "add_notification" in groups["Staff"] and "delete_notification" not in groups["Staff"]
    assert groups["User"] == set()
    assert "add_notification" in groups["API_User"]
    assert "delete_user" in groups["Admin"]


@pytest.mark.django_db
def test_it_unverifies_a_phone_number_changed_outside_verification(client, admin_user):
    from django.utils import timezone

    student = make_user("s1000010", phone="+33612345678", phone_verified_at=timezone.now())
    client.force_login(admin_user)
    form = {
        "username": student.username, "email": student.email, "phone": "+33698765432", "language": "en",
        "timezone": "UTC", "digest_hour": 18, "is_active": "on", "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00", "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00",
    }

    response = client.post(f"/admin/accounts/user/{student.pk}/change/", form)

    assert response.status_code == 302
    student.refresh_from_db()
    assert student.phone == "+33698765432" and student.phone_verified_at is None


@pytest.mark.django_db
def test_it_keeps_a_verified_phone_when_other_fields_change():
    from django.utils import timezone

    student = make_user("s1000011", phone="+33612345678", phone_verified_at=timezone.now())
    student = User.objects.get(pk=student.pk)
    student.first_name = "Grace"
    student.save()
    student.refresh_from_db()
    assert student.phone_verified_at is not None
