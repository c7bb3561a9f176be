"""Message content: templates per notifier, category and channel, in English and French, and the preview."""

import datetime as dt

import pytest

from channels_app.content import TemplateSet, check_message_templates
from channels_app.registry import TemplateMeta
from notifications.models import Delivery, Notification
from notifications.services import notification_preview, notification_send

from .conftest import make_user

DEADLINE = dt.datetime(2026, 2, 20, 16, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def french_student(db):
    return make_user("s2000001", first_name="Aurélie", last_name="Dupont", language="fr", timezone="Europe/Paris",
                     phone="+33612345678", phone_verified_at=DEADLINE)


@pytest.fixture
def english_student(db):
    return make_user("s2000002", first_name="Ada", last_name="Lovelace", timezone="Europe/London")


def draft(**fields):
    fields = {"notifier": "academic", "category": "announcement", "title": "Lab moved", "body": "Lab 3 is in B12.",
              "channels": [], "data": {}, **fields}
    return Notification(**fields)


def test_it_renders_in_french_for_a_french_speaking_student(french_student, english_student):
    alert = draft(notifier="security", category="security", title="Fire drill", body="Leave by the east stairs.",
                  data={"severity": "high", "location": "Building A"}, requires_ack=True)

    french = notification_preview(alert, french_student)
    english = notification_preview(alert, english_student)

    assert french["email"]["subject"] == "[ALERTE ÉLEVÉE] Fire drill"  # the severity in their language
    assert "ALERTE DE SÉCURITÉ — gravité : élevée" in french["email"]["text"]
    assert "Lieu : Building A" in french["email"]["text"]
    assert "Bonjour Aurélie Dupont" in french["email"]["html"]
    assert french["sms"]["text"].startswith("ALERTE (élevée) : Fire drill.")
    assert french["push"]["title"] == "ALERTE : Fire drill"
    assert french["inbox"]["title"] == "Alerte de sécurité (élevée) : Fire drill"
    assert english["email"]["subject"] == "[HIGH] Fire drill"
    assert "SECURITY ALERT — severity: high" in english["email"]["text"]
    assert "Please confirm you have received this alert" in english["email"]["text"]
    assert "Hello Ada Lovelace" in english["email"]["html"]


def test_it_renders_the_category_templates_with_the_deadline_in_the_recipients_zone(french_student, english_student):
    reminder = draft(category="deadline", title="Essay", body="Submit on the portal.", deadline=DEADLINE,
                     data={"course": "HIST210", "reminder_minutes": 1440})

    french = notification_preview(reminder, french_student)
    english = notification_preview(reminder, english_student)

    assert french["email"]["subject"] == "Rappel : [HIST210] Essay — échéance vendredi 20 février, 17:00"
    assert english["email"]["subject"] == "Reminder: [HIST210] Essay — due Friday 20 February, 16:00"
    assert english["sms"]["text"] == "Reminder: Essay, due Fri 20 Feb 16:00."
    assert french["sms"]["text"] == "Rappel : Essay, échéance ven 20 Fév 17:00."
    assert english["push"]["title"] == "HIST210: Essay"  # the notifier's set, below the category's
    assert english["inbox"]["title"] == "Essay"  # the default set


def test_it_falls_back_to_english_when_a_french_template_is_missing(french_student, settings, tmp_path):
    directory = tmp_path / "notifications" / "academic" / "grade"
    directory.mkdir(parents=True)
    (directory / "email_subject.en.txt").write_text("Grades are out: {{ title }}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], tmp_path]}]

    class GradeTemplates(TemplateSet):
        notifier = "academic"
        category = "grade"

    try:
        preview = notification_preview(draft(category="grade", title="CS101"), french_student)
        warnings = [w for w in check_message_templates(None) if w.id == "channels_app.W010"]
    finally:
        del TemplateMeta.registry[("academic", "grade")]

    assert preview["email"]["subject"] == "Grades are out: CS101"
    assert "Bonjour" in preview["email"]["text"]  # the rest is the French default set
    assert [w.msg for w in warnings] == [
        "notifications/academic/grade/email_subject.fr.txt is missing: recipients whose language is 'fr' get the "
        "English version."]


def test_it_reports_at_start_up_a_notifier_without_a_template_for_a_channel_it_uses(db, monkeypatch):
    assert [m for m in check_message_templates(None) if m.level >= 30] == []
    from channels_app.content import DefaultTemplates

    monkeypatch.setattr(DefaultTemplates, "directory", "notifications/nowhere")

    errors = [m for m in check_message_templates(None) if m.id == "channels_app.E010"]
    assert "Notifier 'academic' has no inbox body template for category announcement." in [e.msg for e in errors]
    assert "Notifier 'security' has no sms text template for category security." not in [e.msg for e in errors]


def test_it_refuses_two_template_sets_for_the_same_notifier_and_category(db):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="both claim"):
        class AnotherAcademicSet(TemplateSet):
            notifier = "academic"


def test_it_previews_a_draft_on_every_channel_without_touching_the_database(english_student,
                                                                            django_assert_num_queries):
    notification = draft(channels=["email", "sms", "push", "inbox"], data={"course": "CS101",
                                                                          "url": "https://lms.example/cs101"})

    with django_assert_num_queries(0):
        preview = notification_preview(notification, english_student)

    assert set(preview) == {"email", "sms", "push", "inbox"}
    assert set(preview["email"]) == {"subject", "text", "html"}
    assert preview["email"]["subject"] == "[CS101] Lab moved"
    assert preview["push"] == {"title": "CS101: Lab moved", "body": "Lab 3 is in B12.",
                               "link": "https://lms.example/cs101"}
    assert preview["sms"] == {"text": "Lab moved: Lab 3 is in B12."}
    assert "/unsubscribe/preview/" in preview["email"]["text"]


def test_it_previews_a_saved_notification_without_sending_or_writing(admin_user, english_student):
    notification, _ = notification_send(sender=admin_user, notifier="academic", title="Exam", body="Room C1.",
                                        audience={"users": [english_student.username]}, requires_ack=True)

    preview = notification_preview(notification, english_student)

    assert set(preview) == {"email", "push", "sms", "inbox"}
    assert "/ack/" in preview["email"]["text"] and "/unsubscribe/" in preview["email"]["text"]
    assert preview["push"]["link"].endswith(f"/inbox/{notification.pk}/")
    assert not Delivery.objects.exists()
