"""The Watch page, its live status, its actions and export; a person's page; a delivery's page."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Cohort
from notifications.engine import fanout_page_plan, notification_fan_out
from notifications.models import Delivery, FanoutPage, InboxMessage, Notification, Preference
from notifications.services import notification_send

from .conftest import make_user
from .console_helpers import sent_notification, two_cohorts
from .delivery_helpers import students

BASE = "/admin/notifications/notification/"


@pytest.fixture
def watched(db, admin_user):
    """A notification to four students reached after 1, 2, 5 and 10 seconds, one of them failing on SMS."""
    cohort = Cohort.objects.create(code="ph301", name="Physics 301")
    students = [make_user(f"s500000{n}", first_name=name, last_name="Martin")
                for n, name in enumerate(("Léa", "Hugo", "Chloé", "Louis"))]
    cohort.members.add(*students)
    started = timezone.now() - timedelta(minutes=5)
    notification = Notification.objects.create(
        notifier="academic", category="grade", title="Grades are out", body="See the portal.", channels=["email", "sms"],
        audience={"cohorts": ["ph301"]}, sender=admin_user, status=Notification.Status.PARTIALLY_FAILED,
        recipient_count=4, started_at=started, fanned_out_at=started, completed_at=started, requires_ack=True,
    )
    for student, seconds in zip(students, (1, 2, 5, 10)):
        Delivery.objects.create(notification=notification, recipient=student, channel="email", status="sent",
                                sent_at=started + timedelta(seconds=seconds))
    Delivery.objects.create(notification=notification, recipient=students[0], channel="sms", status="failed",
                            last_error="Twilio 400/21211: The 'To' number is not a valid phone number.")
    for student in students[1:]:
        Delivery.objects.create(notification=notification, recipient=student, channel="sms", status="skipped",
                                reason="default_off")
    InboxMessage.objects.create(notification=notification, recipient=students[0], title="t", body="b",
                                category="grade", acknowledged_at=timezone.now())
    InboxMessage.objects.create(notification=notification, recipient=students[1], title="t", body="b", category="grade")
    return notification


def test_it_shows_channels_reach_reasons_acknowledgements_and_failures_on_the_watch_page(client, admin_user, watched):
    client.force_login(admin_user)

    response = client.get(f"{BASE}{watched.pk}/change/")

    assert response.status_code == 200
    status = response.context["status"]
    rows = {row["key"]: row for row in status["channels"]}
    assert rows["email-0"]["label"] == "Email" and rows["email-0"]["total"] == 4
    assert rows["sms-0"]["total"] == 4
    reach = response.context["reach"]
    assert reach["reached"] == 4 and reach["share"] == 1.0
    assert reach["after"] == {50: 2.0, 95: 10.0, 100: 10.0}
    assert status["sentence"] == "Finished: 4 of 4 recipients reached."
    html = response.content.decode()
    assert "not a valid phone number" in html  # the provider's reason
    assert 'class="reason-default_off"><th scope="row">Category default off</th><td>3</td>' in html
    assert "1 of 4 recipients have acknowledged; 3 still to acknowledge" in html
    assert 'id="fanout-progress"' in html and "console/watch" in html and 'data-final="1"' in html
    assert "<script>" not in html  # the refresh script is a static file
    assert f'href="{BASE}{watched.pk}/deliveries.csv"' in html


def test_it_names_who_has_acknowledged_and_who_has_not_searchable_and_in_pages(client, admin_user, watched):
    client.force_login(admin_user)

    def names(query):
        page = client.get(f"{BASE}{watched.pk}/change/{query}").context["acks_page"]
        return [(person.first_name, person.acknowledged_at is not None) for person in page]

    assert names("") == [("Léa", True), ("Hugo", False), ("Chloé", False), ("Louis", False)]
    assert names("?ack=waiting") == [("Hugo", False), ("Chloé", False), ("Louis", False)]
    assert names("?ack=acknowledged") == [("Léa", True)]
    assert names("?ack_q=hug") == [("Hugo", False)]
    assert names("?ack_q=s5000003") == [("Louis", False)]


def test_it_pages_the_acknowledgements_of_a_large_audience(client, admin_user):
    cohort = Cohort.objects.create(code="big", name="Big")
    cohort.members.add(*students("s70", 120))
    notification = sent_notification(cohort, admin_user, statuses=("sent",) * 120, requires_ack=True,
                                     fanned_out_at=timezone.now())
    client.force_login(admin_user)

    first = client.get(f"{BASE}{notification.pk}/change/")
    last = client.get(f"{BASE}{notification.pk}/change/?ack_page=3")

    assert len(first.context["acks_page"]) == 50 and first.context["acks_page"].paginator.num_pages == 3
    assert len(last.context["acks_page"]) == 20
    assert "page 1 of 3" in first.content.decode()


def test_it_shows_each_escalation_rung_as_its_own_row(client, admin_user):
    cohort = Cohort.objects.create(code="sec", name="Security drill")
    people = students("s80", 10)
    cohort.members.add(*people)
    notification = sent_notification(cohort, admin_user, statuses=("sent",) * 10, channel="push", requires_ack=True)
    for person in people[:7]:
        Delivery.objects.create(notification=notification, recipient=person, channel="sms", escalation_level=1,
                                status="sent")
    for person in people[7:]:
        Delivery.objects.create(notification=notification, recipient=person, channel="sms", escalation_level=1,
                                status="skipped", reason="phone_not_verified")
    client.force_login(admin_user)

    status = client.get(f"{BASE}{notification.pk}/status.json").json()

    rows = {row["label"]: (row["level"], row["total"]) for row in status["channels"]}
    assert rows == {"Web push": (0, 10), "Escalation 1: SMS": (1, 10)}
    assert status["reasons"] == {"columns": [["sms-1", "Escalation 1: SMS"]],
                                 "rows": [{"code": "phone_not_verified", "label": "Phone not verified", "counts": [3]}]}


@pytest.mark.django_db
def test_its_totals_are_the_audience_from_the_start_never_growing_as_pages_are_planned(client, admin_user, settings):
    settings.FANOUT_CHUNK_SIZE = settings.FANOUT_INBOX_PAGE_SIZE = 10
    cohort = Cohort.objects.create(code="cs101", name="CS 101")
    cohort.members.add(*students("s60", 40))
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Room change", body="B12", channels=["inbox"],
                                        audience={"cohorts": ["cs101"]})
    client.force_login(admin_user)

    def status():
        return client.get(f"{BASE}{notification.pk}/status.json").json()

    before = status()
    assert (before["state"], before["audience"], before["reached"]) == ("waiting", 40, 0)
    assert "Queued" not in before["sentence"]
    notification_fan_out(notification.pk, spread=True)  # pages saved, none planned yet
    seen = [status()]
    for page in FanoutPage.objects.filter(notification=notification).order_by("after_pk"):
        fanout_page_plan(page.pk)  # plans the page and sends its first chunk (the inbox, in process)
        seen.append(status())

    assert [s["audience"] for s in seen] == [40] * 5
    assert [s["reached"] for s in seen] == [0, 10, 20, 30, 40]
    assert [s["percent"] for s in seen] == [0, 25, 50, 75, 100]
    assert seen[2]["sentence"] == "Sending: 20 of 40 recipients reached so far, 50% done."
    assert seen[2]["status_label"] == "Sending"
    notification.refresh_from_db()
    assert notification.recipient_count == 40


@pytest.mark.django_db
def test_it_draws_a_cancelled_notification_as_stopped_and_a_scheduled_one_with_its_time_for_the_viewer(
        client, admin_user):
    admin_user.timezone, admin_user.language = "Europe/Paris", "fr"
    admin_user.save()
    mine, _, other = two_cohorts(make_user("t2000001", is_staff=True))
    running = sent_notification(mine, admin_user, statuses=("sent", "queued"), started_at=timezone.now())
    at = timezone.now().replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=2)  # 09:00 in Paris
    scheduled = Notification.objects.create(notifier="academic", category="announcement", title="Later", body="x",
                                            audience={"cohorts": ["cs101"]}, sender=admin_user,
                                            status="scheduled", scheduled_for=at)
    client.force_login(admin_user)

    client.post(f"{BASE}{running.pk}/act/", {"action": "cancel"})
    cancelled = client.get(f"{BASE}{running.pk}/status.json").json()
    waiting = client.get(f"{BASE}{scheduled.pk}/status.json").json()

    assert (cancelled["state"], cancelled["percent"], cancelled["final"]) == ("cancelled", 50, True)
    assert cancelled["sentence"] == "Annulée : 1 destinataires sur 2 atteints avant l’arrêt."
    assert waiting["state"] == "scheduled" and waiting["audience"] == 2
    assert "09:00 (Europe/Paris)" in waiting["sentence"]
    assert waiting["actions"] == {"retry": False, "resend": False, "cancel": True}
    client.post(f"{BASE}{scheduled.pk}/act/", {"action": "cancel"})
    never_started = client.get(f"{BASE}{scheduled.pk}/status.json").json()
    assert (never_started["state"], never_started["audience"], never_started["percent"]) == (
        "cancelled_before_start", 2, 0)
    assert never_started["actions"] == {"retry": False, "resend": False, "cancel": False}


def test_its_actions_show_only_when_they_can_act_and_return_to_the_notification(client, staff_user):
    mine, _, other = two_cohorts(staff_user)
    failing = sent_notification(mine, other, statuses=("failed", "sent"), fanned_out_at=timezone.now())
    Notification.objects.filter(pk=failing.pk).update(status="partially_failed")
    finished = sent_notification(mine, other, title="Done", fanned_out_at=timezone.now())
    Notification.objects.filter(pk=finished.pk).update(status="sent")
    client.force_login(staff_user)

    page = client.get(f"{BASE}{finished.pk}/change/").content.decode()
    assert 'id="act-retry" hidden' in page and 'id="act-cancel" hidden' in page
    page = client.get(f"{BASE}{failing.pk}/change/").content.decode()
    assert 'id="act-retry" >' in page and 'id="act-cancel" hidden' in page

    response = client.post(f"{BASE}{failing.pk}/act/", {"action": "retry_failed"})

    assert response.status_code == 302 and response["Location"] == f"{BASE}{failing.pk}/change/"
    assert sorted(failing.deliveries.values_list("status", flat=True)) == ["queued", "sent"]
    assert client.get(f"{BASE}{failing.pk}/act/").status_code == 405


def test_it_exports_the_deliveries_as_formula_safe_csv_with_readable_reasons(client, admin_user, watched):
    Delivery.objects.filter(notification=watched, channel="sms", status="failed").update(last_error="=HYPERLINK(1)")
    watched.deliveries.first().recipient.__class__.objects.filter(username="s5000003").update(first_name="+cmd|x")
    client.force_login(admin_user)

    response = client.get(f"{BASE}{watched.pk}/deliveries.csv")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:8] == ["Delivery", "Username", "Name", "Email", "Channel", "Escalation rung", "Status", "Reason"]
    assert len(rows) == 1 + 8
    by_user = {(row[1], row[4]): row for row in rows[1:]}
    assert by_user[("s5000001", "SMS")][6:8] == ["Skipped", "Category default off"]
    assert by_user[("s5000000", "SMS")][-1] == "'=HYPERLINK(1)"
    assert by_user[("s5000003", "Email")][2] == "'+cmd|x Martin"


def test_staff_export_and_watch_only_their_notifications(client, staff_user):
    mine, theirs, other = two_cohorts(staff_user)
    own = sent_notification(mine, other)
    foreign = sent_notification(theirs, other)
    client.force_login(staff_user)

    assert client.get(f"{BASE}{own.pk}/deliveries.csv").status_code == 200
    for url in ("deliveries.csv", "status.json", "change/"):
        assert client.get(f"{BASE}{foreign.pk}/{url}").status_code == 404
    assert client.post(f"{BASE}{foreign.pk}/act/", {"action": "cancel"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == "sending"


def test_a_persons_page_answers_why_they_did_not_get_it(client, staff_user):
    mine, theirs, other = two_cohorts(staff_user)
    lea = mine.members.order_by("pk").first()
    lea.first_name, lea.last_name, lea.phone = "Léa", "Martin", "+33612345678"
    lea.save()
    Preference.objects.create(user=lea, category="announcement", channel="email", enabled=False)
    notification = sent_notification(mine, staff_user, statuses=("skipped", "sent"))
    Delivery.objects.filter(notification=notification, recipient=lea).update(reason="opted_out")
    client.force_login(staff_user)

    response = client.get(f"/admin/people/{lea.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    grid = {row["label"]: {cell["channel"]: (cell["on"], cell["why"]) for cell in row["cells"]}
            for row in response.context["grid"]}
    assert grid["Course announcement"]["email"] == (False, "their choice")
    assert grid["Course announcement"]["sms"] == (False, "category default")
    assert grid["Security and emergency"]["sms"] == (True, "always (security alerts reach everyone)")
    assert "cs101 — Computer Science 101" in html
    assert "not verified: no SMS is sent" in html and "0 browsers subscribed" in html
    assert [(row["delivery"].notification_id, row["reason"]) for row in response.context["deliveries"]] \
        == [(notification.pk, "Opted out")]
    outsider = theirs.members.first()
    assert client.get(f"/admin/people/{outsider.pk}/").status_code == 404
    found = client.get("/admin/people/?q=martin").context["found"]
    assert found == [lea]
    assert client.get("/admin/people/?q=s1000003").context["found"] == []  # not in a cohort they manage


def test_the_user_list_and_every_delivery_lead_to_the_persons_page(client, admin_user, watched):
    lea = watched.deliveries.get(channel="sms", status="failed").recipient
    skipped = watched.deliveries.filter(channel="sms", status="skipped").first()
    client.force_login(admin_user)

    users = client.get("/admin/accounts/user/?q=s5000000").content.decode()
    delivery = client.get(f"/admin/notifications/delivery/{skipped.pk}/change/")

    assert f'href="/admin/people/{lea.pk}/"' in users
    assert delivery.status_code == 200
    assert delivery.context["title"] == (f"Grades are out → {skipped.recipient.get_full_name()} "
                                         f"({skipped.recipient.username}) by sms: skipped — category default off")
    html = delivery.content.decode()
    assert f'href="/admin/people/{skipped.recipient_id}/"' in html
    assert "Internals" in html and "collapse" in html


def test_staff_do_not_see_a_deliverys_internals(client, staff_user):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, staff_user)
    client.force_login(staff_user)

    html = client.get(f"/admin/notifications/delivery/{notification.deliveries.first().pk}/change/").content.decode()

    assert "Room change → s1000001 by email: sent" in html
    assert "Internals" not in html and "claim" not in html.lower()


def test_it_lists_status_and_reach_with_filters_and_search(client, admin_user, watched):
    other = Notification.objects.create(notifier="academic", category="announcement", title="Library closed",
                                        body="x", audience={"everyone": True}, status="queued")
    client.force_login(admin_user)

    listing = client.get(BASE)
    assert listing.status_code == 200
    html = listing.content.decode()
    assert '<progress max="4" value="4"></progress> 4/4' in html
    assert "fn-status-partially_failed" in html

    def titles(query):
        return sorted(n.title for n in client.get(BASE + query).context["cl"].result_list)

    assert titles("?status__exact=queued") == ["Library closed"]
    assert titles("?category__exact=grade") == ["Grades are out"]
    assert titles(f"?sender={admin_user.pk}") == ["Grades are out"]
    assert titles("?q=library") == ["Library closed"]
    assert titles("?q=s5000002") == ["Grades are out"]  # by recipient
    today = timezone.localdate()
    assert titles(f"?created_at__year={today.year}&created_at__month={today.month}&created_at__day={today.day}") \
        == ["Grades are out", "Library closed"]
    assert titles(f"?created_at__year={today.year - 1}") == []
    assert other.pk


def test_it_reports_progress_as_json_while_deliveries_are_pending(client, staff_user):
    mine, _, other = two_cohorts(staff_user)
    notification = sent_notification(mine, other, statuses=("sent", "queued"))
    client.force_login(staff_user)

    running = client.get(f"{BASE}{notification.pk}/progress.json").json()
    assert running == {"total": 2, "done": 1, "pending": 1, "fanned_out": False, "percent": 50,
                       "status": "sending", "final": False}

    Notification.objects.filter(pk=notification.pk).update(fanned_out_at=timezone.now())
    Delivery.objects.filter(notification=notification).update(status="sent")
    done = client.get(f"{BASE}{notification.pk}/progress.json").json()
    assert done["percent"] == 100 and done["final"] is True
