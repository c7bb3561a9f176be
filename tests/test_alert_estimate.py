"""The estimate before an alert is sent: recipients and time per channel from the rate limits, SMS cost, a warning."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Cohort, Role
from channels_app.mixins import sms_count
from notifications.models import Notification
from notifications.services.estimate import alert_estimate, estimate_rates_parse
from notifications.services.sending import notification_preview

from .api_support import *  # noqa: F403
from .api_support import API, jwt_client
from .conftest import make_user

ALERT = {"notifier": "security", "title": "Gas leak", "body": "Leave the Library now by the north exit.",
         "data": {"severity": "high"}, "channels": ["sms", "email", "inbox"], "audience": {"cohorts": ["cs101"]},
         "translations": {"fr": {"title": "Fuite de gaz",
                                 "body": "Quittez la bibliothèque par la sortie nord : ça brûle."}}}


@pytest.fixture
def rates(settings):
    settings.SMS_RATE_LIMIT = "2"
    settings.EMAIL_RATE_LIMIT = ""
    settings.PUSH_RATE_LIMIT = "0"
    settings.ALERT_ESTIMATE_RATES = "email=3,inbox=1000"
    settings.SMS_PRICE_PER_SEGMENT = 0.01
    settings.SMS_PRICE_CURRENCY = "EUR"
    settings.ALERT_TARGET_MINUTES = 10
    return settings


@pytest.fixture
def campus(db, staff_user):
    staff_user.groups.add(Group.objects.get(name=Role.EMERGENCY))  # emergency alerts need the permission
    cohort = Cohort.objects.create(code="cs101", name="Computer Science 101")
    cohort.managers.add(staff_user)
    now = timezone.now()
    students = [make_user(f"s20000{n:02d}", phone=f"+155501000{n:02d}", phone_verified_at=now,
                          language="fr" if n >= 4 else "en") for n in range(6)]
    students.append(make_user("s2000099", language="en"))  # no phone: email and inbox only
    cohort.members.add(*students)
    return cohort


def sms_segments(fields, language):
    """Segments of the SMS as the notifier renders it for a reader of `language`, counted as the console counts."""
    draft = Notification(category="security", requires_ack=True, **fields)
    reader = make_user(f"reader-{language}", language=language)
    return sms_count(notification_preview(draft, reader)["sms"]["text"])["segments"]


@pytest.mark.django_db
def test_it_estimates_time_per_channel_from_the_rate_limits_and_the_sms_cost(rates, campus, staff_user):
    estimate = alert_estimate(sender=staff_user, **ALERT)

    rows = {row["channel"]: row for row in estimate["channels"]}
    assert estimate["people"] == 7
    assert rows["sms"] | {"label": None} == {"channel": "sms", "label": None, "recipients": 6, "rate": 2.0,
                                             "rate_source": "SMS_RATE_LIMIT", "seconds": 3.0}
    assert (rows["email"]["recipients"], rows["email"]["rate"], rows["email"]["rate_source"],
            rows["email"]["seconds"]) == (7, 3.0, "ALERT_ESTIMATE_RATES", 2.3)
    assert (rows["inbox"]["rate"], rows["inbox"]["seconds"]) == (1000.0, 0.0)
    assert estimate["seconds"] == 3.0  # in parallel: the slowest channel
    assert not estimate["over_target"] and estimate["warning"] == ""

    english, french = sms_segments(ALERT, "en"), sms_segments(ALERT, "fr")
    versions = {v["language"]: v for v in estimate["sms"]["versions"]}
    assert (versions["en"]["recipients"], versions["en"]["segments"]) == (4, english)
    assert (versions["fr"]["recipients"], versions["fr"]["segments"], versions["fr"]["encoding"]) == (2, french,
                                                                                                      "UCS-2")
    assert estimate["sms"]["recipients"] == 6 and estimate["sms"]["currency"] == "EUR"
    assert estimate["sms"]["cost"] == pytest.approx((4 * english + 2 * french) * 0.01)


@pytest.mark.django_db
def test_it_cuts_the_sms_at_the_most_segments_and_warns_past_the_target(rates, campus, staff_user):
    rates.SMS_RATE_LIMIT = "0.05"
    rates.ALERT_TARGET_MINUTES = 1
    rates.SMS_MAX_SEGMENTS = 3

    estimate = alert_estimate(sender=staff_user, **{**ALERT, "body": "Leave now. " * 200, "translations": {}})

    assert estimate["seconds"] == 120.0 and estimate["over_target"]
    assert "2 min" in estimate["warning"] and "1 minutes" in estimate["warning"]
    assert estimate["sms"]["segments"] == 3
    assert estimate["sms"]["cost"] == pytest.approx(3 * 6 * 0.01)


@pytest.mark.django_db
def test_it_validates_as_the_send_does(rates, campus, staff_user):
    with pytest.raises(ValidationError) as raised:
        alert_estimate(sender=staff_user, **{**ALERT, "title": "Gas\nleak", "data": {}})
    assert set(raised.value.message_dict) == {"title", "data"}


def test_it_reads_the_estimate_rates_setting():
    assert estimate_rates_parse("email=500, sms=0.5") == {"email": 500.0, "sms": 0.5}
    for bad in ("email", "fax=3", "sms=-1", "sms=fast"):
        with pytest.raises(Exception, match="ALERT_ESTIMATE_RATES"):
            estimate_rates_parse(bad)


@pytest.mark.django_db
def test_the_api_estimates_the_body_of_a_send(rates, campus, staff_user, student):
    response = jwt_client(staff_user).post(f"{API}notifications/estimate/", ALERT, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["seconds"] == 3.0 and body["sms"]["recipients"] == 6 and body["target_minutes"] == 10
    assert {row["channel"]: row["rate_source"] for row in body["channels"]} == {
        "sms": "SMS_RATE_LIMIT", "email": "ALERT_ESTIMATE_RATES", "inbox": "ALERT_ESTIMATE_RATES"}
    assert Notification.objects.count() == 0

    bad = jwt_client(staff_user).post(f"{API}notifications/estimate/", {**ALERT, "data": {}, "title": "A\nB"},
                                      format="json")
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"data", "title"}
    assert jwt_client(student).post(f"{API}notifications/estimate/", ALERT, format="json").status_code == 403


@pytest.mark.django_db
def test_the_compose_confirmation_of_a_security_alert_shows_the_estimate(rates, campus, client, staff_user):
    client.force_login(staff_user)
    form = {"notifier": "security", "category": "security", "priority": "normal", "severity": "high",
            "channels": ["sms", "email", "inbox"], "title": "Gas leak", "body": "Leave the Library now.",
            "cohorts": [campus.pk], "token": "tok-1"}

    response = client.post("/admin/notifications/notification/add/", form)

    assert response.status_code == 200, response.context["form"].errors
    assert response.context["estimate"]["seconds"] == 3.0
    page = response.content.decode()
    assert 'id="estimate"' in page and "SMS_RATE_LIMIT" in page and "EUR" in page
    academic = client.post("/admin/notifications/notification/add/", {
        **form, "notifier": "academic", "category": "announcement", "severity": ""})
    assert "estimate" not in academic.context and 'id="estimate"' not in academic.content.decode()
