"""The compliance ledger of emergency alerts: append-only at every door and in the database, hash-chained,
recording completion and cancellation, exported as CSV and JSON, kept at least 7 years."""

import csv
import io
import json
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.data_rights import user_erase
from accounts.models import Cohort, Role
from notifications.engine import deliveries_purge, deliveries_send, notification_fan_out, retention_purge
from notifications.ledger_db import ledger_triggers_missing
from notifications.models import Delivery, InboxMessage, LedgerEntry, Notification
from notifications.services import notification_cancel, notification_send
from notifications.services.inbox import message_acknowledge

from .api_support import API, jwt_client, key_client, private_cache, session_client  # noqa: F401
from .conftest import make_user
from .delivery_helpers import closed_breakers, fan_out_and_send  # noqa: F401
from .peers import wait_until

LEDGER = "/admin/notifications/ledgerentry/"
Event = LedgerEntry.Event


@pytest.fixture(autouse=True)
def no_second_person(settings):
    # These tests are about the ledger: a free-text alert goes without waiting for an approval.
    settings.EMERGENCY_TWO_PERSON_RULE = False


@pytest.fixture
def manager(db):
    """A Staff member with the Emergency role: may read the ledger."""
    user = make_user("e5000001", role=Role.STAFF, is_staff=True, first_name="Morgan", last_name="Reyes",
                     email="morgan@example.edu")
    user.groups.add(Group.objects.get(name=Role.EMERGENCY))
    return user


@pytest.fixture
def people(db):
    return [make_user(f"s70000{n:02d}") for n in range(3)]


def managing(manager, people):
    """Make `manager` manage a cohort of `people`: Staff send only to their cohorts."""
    cohort = Cohort.objects.create(code=f"drill-{manager.pk}", name="Drill")
    cohort.members.add(*people)
    cohort.managers.add(manager)
    return manager


def content_of(response):
    assert response.status_code == 200, response.status_code
    return b"".join(response.streaming_content).decode("utf-8-sig")


def alert_send(sender, people, **fields):
    fields.setdefault("channels", ["email", "inbox"])
    fields.setdefault("data", {"severity": "high"})
    notification, _ = notification_send(sender=sender, notifier="security", title=fields.pop("title", "Gas leak"),
                                        body="Leave building C now.", audience={"users": [p.username for p in people]},
                                        **fields)
    return notification


def events(notification_id=None):
    entries = LedgerEntry.objects.order_by("id")
    if notification_id is not None:
        entries = entries.filter(notification_id=notification_id)
    return list(entries.values_list("event", flat=True))


def raw_sql(sql, params=()):
    """Run `sql` in a savepoint of its own, so that a refusal leaves the test's transaction usable."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def years_ago(years, **extra):
    now = timezone.now()
    return now.replace(year=now.year - years, day=min(now.day, 28)) - timedelta(**extra)


def drop_triggers():
    """Tamper as someone with the database's owner rights would: without the triggers (rolled back with the
    test's transaction, on SQLite and PostgreSQL alike)."""
    if connection.vendor == "postgresql":
        raw_sql("DROP TRIGGER notifications_ledgerentry_guard ON notifications_ledgerentry")
    else:
        raw_sql("DROP TRIGGER notifications_ledgerentry_no_update")
        raw_sql("DROP TRIGGER notifications_ledgerentry_no_early_delete")


# --- append-only: the ORM ------------------------------------------------------------------------

def test_it_refuses_every_change_through_the_orm(admin_user, people):
    alert = alert_send(admin_user, people)
    entry = LedgerEntry.objects.get(notification_id=alert.pk, event=Event.DRAFTED)

    entry.actor = "someone else"
    with pytest.raises(PermissionDenied):
        entry.save()
    with pytest.raises(PermissionDenied):
        entry.delete()
    with pytest.raises(PermissionDenied):
        LedgerEntry.objects.filter(pk=entry.pk).update(actor="someone else")
    with pytest.raises(PermissionDenied):
        LedgerEntry.objects.all().delete()

    assert events(alert.pk) == [Event.DRAFTED, Event.CONTENT, Event.SENT]
    assert LedgerEntry.objects.get(pk=entry.pk).actor == f"{admin_user.username} ({admin_user.username})"


def test_it_keeps_no_ledger_for_a_notification_that_is_not_an_emergency_alert(admin_user, people):
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Room change", body="B12", audience={"users": [people[0].username]},
                                        scheduled_for=timezone.now() + timedelta(hours=1))
    notification_cancel(notification, by=admin_user)
    assert not LedgerEntry.objects.exists()


# --- the hash chain ----------------------------------------------------------------------------

def test_it_finds_the_entry_edited_behind_the_applications_back(admin_user, manager, people, client):
    alert = alert_send(admin_user, people)
    other = alert_send(admin_user, people[:1], title="Flood")
    drafted, content, sent = LedgerEntry.objects.filter(notification_id=alert.pk).order_by("id")
    assert LedgerEntry.verify_chain() is None

    drop_triggers()
    raw_sql("UPDATE notifications_ledgerentry SET data = %s WHERE id = %s",
            [json.dumps({"status": "nothing happened"}), sent.pk])

    assert LedgerEntry.verify_chain() == sent
    client.force_login(admin_user)
    page = client.get(f"/admin/notifications/notification/{alert.pk}/change/")
    assert (page.context["ledger"]["chain"]["intact"], page.context["ledger"]["chain"]["broken_at"]) == (
        False, sent.pk)
    assert f"broken at entry {sent.pk}" in page.content.decode()
    assert f"broken at entry {sent.pk}" in client.get(LEDGER).content.decode()
    exported = json.loads(content_of(jwt_client(manager).get(f"{API}notifications/{other.pk}/ledger/")))
    assert exported["chain"]["broken_at"] == sent.pk  # the stretch checked starts at the entry before


def test_it_finds_an_entry_deleted_behind_the_applications_back(admin_user, people):
    alert = alert_send(admin_user, people)
    notification_cancel(alert, by=admin_user)
    drafted, content, sent, cancelled = LedgerEntry.objects.order_by("id")

    drop_triggers()
    raw_sql("DELETE FROM notifications_ledgerentry WHERE id = %s", [content.pk])

    assert LedgerEntry.verify_chain() == sent  # its link names an entry that is gone


# --- append-only: the database -----------------------------------------------------------------

def test_it_has_the_database_refuse_an_update_and_an_early_delete_in_raw_sql(admin_user, people):
    alert = alert_send(admin_user, people)
    entry = LedgerEntry.objects.filter(notification_id=alert.pk).first()
    old = LedgerEntry.record(alert, Event.COMPLETED, data={"recipients": 3}, at=years_ago(7, days=2))
    assert ledger_triggers_missing(connection) == []  # also: the tampering tests above left them in place

    with pytest.raises(DatabaseError, match="append-only"):
        raw_sql("UPDATE notifications_ledgerentry SET actor = 'someone else' WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"):
        raw_sql("UPDATE notifications_ledgerentry SET actor = 'someone else' WHERE id = %s", [old.pk])
    with pytest.raises(DatabaseError, match="at least 7 years"):
        raw_sql("DELETE FROM notifications_ledgerentry WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="at least 7 years"):
        raw_sql("DELETE FROM notifications_ledgerentry")
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError, match="cannot be truncated"):
            raw_sql("TRUNCATE notifications_ledgerentry")

    assert LedgerEntry.objects.count() == 4
    assert raw_sql("DELETE FROM notifications_ledgerentry WHERE id = %s", [old.pk]) == 1  # past 7 years: may go
    assert LedgerEntry.verify_chain() is None


@pytest.mark.django_db(transaction=True)
def test_it_lets_the_test_suites_flush_empty_the_ledger_and_only_it(settings):
    people = [make_user("s7100001")]
    admin = make_user("a7100001", role=Role.ADMIN, is_staff=True, is_superuser=True)
    alert_send(admin, people)
    settings.LEDGER_FLUSH_ALLOWED = False

    with pytest.raises(CommandError, match="compliance ledger has entries"):
        call_command("flush", interactive=False, verbosity=0)
    assert LedgerEntry.objects.count() == 3

    settings.LEDGER_FLUSH_ALLOWED = True
    call_command("flush", interactive=False, verbosity=0)
    assert not LedgerEntry.objects.exists() and not Notification.objects.exists()

    # The unlocking ended with the flush: the database refuses again (and the test's own flush still works).
    admin = make_user("a7100001", role=Role.ADMIN, is_staff=True, is_superuser=True)
    alert = alert_send(admin, [make_user("s7100001")])
    entry = LedgerEntry.objects.filter(notification_id=alert.pk).first()
    with pytest.raises(DatabaseError, match="at least 7 years"):
        raw_sql("DELETE FROM notifications_ledgerentry WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"):
        raw_sql("UPDATE notifications_ledgerentry SET actor = '' WHERE id = %s", [entry.pk])


@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_chain_when_many_writers_record_at_once():
    alert = Notification(pk=10**9, notifier="security")
    ready = threading.Barrier(6)
    failures = []

    def writer(n):
        try:
            ready.wait()
            for i in range(10):
                LedgerEntry.record(alert, Event.CHECKIN, data={"writer": n, "i": i})
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert LedgerEntry.objects.count() == 60
    assert LedgerEntry.verify_chain() is None  # no fork: each entry links to the one before it


# --- what the engine and the services record ------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_it_records_the_counts_when_a_real_worker_has_sent_a_security_alert(smtp_peer, workers, closed_breakers,
                                                                           settings):
    settings.EMERGENCY_TWO_PERSON_RULE = False
    admin = make_user("a7200001", role=Role.ADMIN, is_staff=True, is_superuser=True)
    people = [make_user(f"s72000{n:02d}") for n in range(3)]
    workers()

    alert = alert_send(admin, people)
    wait_until(lambda: LedgerEntry.objects.filter(notification_id=alert.pk, event=Event.COMPLETED).exists(),
               timeout=60, message="the COMPLETED entry")

    completed = LedgerEntry.objects.get(notification_id=alert.pk, event=Event.COMPLETED)
    assert completed.actor == "" and completed.actor_id is None  # the system, not a person
    assert completed.data == {"status": "sent", "deliveries": {"email": {"sent": 3}, "inbox": {"sent": 3}},
                              "recipients": 3, "reached": 3, "acknowledged": 0}
    assert len(smtp_peer.messages) == 3
    assert events(alert.pk) == [Event.DRAFTED, Event.CONTENT, Event.SENT, Event.COMPLETED]
    assert LedgerEntry.verify_chain() is None


def test_it_counts_who_acknowledged_before_the_alert_was_complete(admin_user, people, closed_breakers):
    alert = alert_send(admin_user, people)
    notification_fan_out(alert.pk)
    deliveries = Delivery.objects.filter(notification=alert)
    deliveries_send(list(deliveries.filter(channel="inbox").values_list("id", flat=True)))
    message_acknowledge(InboxMessage.objects.get(notification=alert, recipient=people[0]))
    assert not LedgerEntry.objects.filter(event=Event.COMPLETED).exists()  # email still to send

    deliveries_send(list(deliveries.filter(channel="email").values_list("id", flat=True)))

    completed = LedgerEntry.objects.get(notification_id=alert.pk, event=Event.COMPLETED)
    assert completed.data["acknowledged"] == 1 and completed.data["recipients"] == 3
    assert completed.incident_id == alert.incident_id is not None


def test_it_records_who_cancelled_an_alert_at_every_door(admin_user, manager, people):
    scheduled = timezone.now() + timedelta(hours=1)
    by_service = alert_send(admin_user, people, scheduled_for=scheduled)
    by_api = alert_send(admin_user, people, scheduled_for=scheduled, title="Flood")

    notification_cancel(by_service, by=manager)
    response = jwt_client(admin_user).post(f"{API}notifications/{by_api.pk}/cancel/")

    assert response.status_code == 200
    cancelled = LedgerEntry.objects.get(notification_id=by_service.pk, event=Event.CANCELLED)
    assert (cancelled.actor, cancelled.actor_id) == ("Morgan Reyes (e5000001)", manager.pk)
    assert cancelled.data == {"deliveries_cancelled": 0}
    assert LedgerEntry.objects.get(notification_id=by_api.pk, event=Event.CANCELLED).actor_id == admin_user.pk
    assert events(by_service.pk) == [Event.DRAFTED, Event.CONTENT, Event.SENT, Event.CANCELLED]


# --- exports -------------------------------------------------------------------------------------

def test_it_exports_an_alerts_ledger_as_json_and_csv_through_the_api(admin_user, manager, people):
    admin_user.first_name = "=HYPERLINK(\"http://evil\")"
    admin_user.save()
    alert = alert_send(admin_user, people, scheduled_for=timezone.now() + timedelta(hours=1))
    alert_send(admin_user, people, title="Unrelated")
    notification_cancel(alert, by=manager)
    client = jwt_client(manager)

    body = json.loads(content_of(client.get(f"{API}notifications/{alert.pk}/ledger/")))
    as_csv = client.get(f"{API}notifications/{alert.pk}/ledger/?format=csv")

    assert body["format"] == "flashnotify-ledger/1"
    assert body["scope"] == {"notification": alert.pk, "incident": alert.incident_id}
    assert body["chain"] == {"intact": True, "broken_at": None, "checked": 7}
    assert [e["event"] for e in body["entries"]] == ["drafted", "content", "sent", "cancelled"]
    content = body["entries"][1]
    assert content["data"]["title"] == "Gas leak" and content["data"]["body"] == "Leave building C now."
    assert content["actor"] == f'=HYPERLINK("http://evil") ({admin_user.username})'
    assert len(content["digest"]) == 64 and content["previous_digest"] == body["entries"][0]["digest"]

    assert as_csv.status_code == 200 and as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"] == f'attachment; filename="ledger-alert-{alert.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(content_of(as_csv))))
    assert [row["event"] for row in rows] == ["drafted", "content", "sent", "cancelled"]
    assert rows[1]["actor"].startswith("'=HYPERLINK")  # shown as text by a spreadsheet, never run
    assert json.loads(rows[1]["details"])["title"] == "Gas leak"
    assert rows[3]["actor"] == "Morgan Reyes (e5000001)" and rows[3]["event_label"] == "Cancelled"


def test_it_exports_a_period_through_the_api(admin_user, manager, people):
    alert = alert_send(admin_user, people)
    LedgerEntry.record(alert, Event.COMPLETED, data={"recipients": 3}, at=timezone.now() - timedelta(days=40))
    client = jwt_client(manager)

    recent = json.loads(content_of(client.get(f"{API}ledger/")))  # the last 30 days by default
    everything = client.get(f"{API}ledger/", {"since": (timezone.now() - timedelta(days=60)).isoformat(),
                                               "format": "csv"})
    backwards = client.get(f"{API}ledger/", {"since": timezone.now().isoformat(),
                                             "until": (timezone.now() - timedelta(days=1)).isoformat()})
    bad = client.get(f"{API}ledger/", {"format": "xml", "since": "yesterday"})

    assert [e["event"] for e in recent["entries"]] == ["drafted", "content", "sent"]
    assert set(recent["scope"]) == {"since", "until"}
    assert len(list(csv.reader(io.StringIO(content_of(everything))))) == 5
    assert backwards.status_code == 400
    assert backwards.json()["errors"] == {"since": ["The start of the period must be before its end."]}
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"format", "since"}


def test_it_refuses_every_write_and_whoever_may_not_read_the_ledger_through_the_api(admin_user, manager, people,
                                                                                    staff_user):
    alert = alert_send(admin_user, people)
    url = f"{API}notifications/{alert.pk}/ledger/"
    client = session_client(manager, enforce_csrf=False)

    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(url).status_code == 405, method
        assert getattr(client, method)(f"{API}ledger/").status_code == 405, method
    assert jwt_client(staff_user).get(url).status_code == 403  # Staff without the Emergency role
    assert jwt_client(staff_user).get(f"{API}ledger/").status_code == 403
    assert jwt_client(manager).get(f"{API}notifications/{alert.pk + 100}/ledger/").status_code == 404
    assert key_client(admin_user, ["read_deliveries"]).get(url).status_code == 200
    assert key_client(admin_user, ["send"]).get(url).status_code == 403
    assert events(alert.pk) == [Event.DRAFTED, Event.CONTENT, Event.SENT]


def test_it_documents_the_ledger_endpoints_in_the_openapi_schema(admin_user):
    schema = jwt_client(admin_user).get(f"{API}schema/?format=json").json()
    alert, period = schema["paths"]["/api/v1/notifications/{id}/ledger/"], schema["paths"]["/api/v1/ledger/"]
    assert set(alert) == {"get"} and set(period) == {"get"}  # no write method
    assert {p["name"] for p in period["get"]["parameters"]} >= {"since", "until", "format"}
    assert set(alert["get"]["responses"]["200"]["content"]) == {"application/json", "text/csv"}


# --- the console -------------------------------------------------------------------------------

def test_it_shows_the_ledger_read_only_to_everyone_even_a_superuser(admin_user, people, client):
    alert = alert_send(admin_user, people)
    entry = LedgerEntry.objects.filter(notification_id=alert.pk).first()
    client.force_login(admin_user)

    listing = client.get(LEDGER)
    page = client.get(f"{LEDGER}{entry.pk}/change/")

    assert listing.status_code == 200 and "intact" in listing.content.decode()
    assert list(listing.context["cl"].result_list) == list(LedgerEntry.objects.order_by("-id"))
    assert listing.context["action_form"] is None  # no action, "delete selected" included
    assert f'href="{LEDGER}add/"' not in listing.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html and "Gas leak" in html
    assert client.get(f"{LEDGER}add/").status_code == 403
    assert client.post(f"{LEDGER}{entry.pk}/change/", {"actor": "someone else"}).status_code == 403
    assert client.get(f"{LEDGER}{entry.pk}/delete/").status_code == 403
    assert client.post(f"{LEDGER}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.post(LEDGER, {"action": "delete_selected", "_selected_action": [entry.pk]}).status_code in (200, 302)
    assert LedgerEntry.objects.get(pk=entry.pk).actor == entry.actor and LedgerEntry.objects.count() == 3


def test_it_lists_the_ledger_with_filters_and_search(admin_user, manager, people, client):
    first = alert_send(admin_user, people, scheduled_for=timezone.now() + timedelta(hours=1))
    second = alert_send(managing(manager, people), people, title="Flood")
    notification_cancel(first, by=manager)
    client.force_login(manager)

    def shown(query):
        response = client.get(LEDGER, query)
        assert response.status_code == 200
        return [(e.notification_id, e.event) for e in response.context["cl"].result_list]

    assert shown({"event__exact": "cancelled"}) == [(first.pk, "cancelled")]
    assert shown({"alert": str(second.pk)}) == [(second.pk, "sent"), (second.pk, "content"), (second.pk, "drafted")]
    assert shown({"q": "Morgan"}) == [(first.pk, "cancelled"), (second.pk, "sent"), (second.pk, "content"),
                                      (second.pk, "drafted")]
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)  # the date filter's "Today"
    assert len(shown({"at__gte": str(today), "at__lt": str(today + timedelta(days=1))})) == 7
    assert shown({"at__gte": str(today + timedelta(days=1))}) == []


def test_it_refuses_the_ledger_to_staff_without_the_emergency_role(admin_user, staff_user, people, client):
    alert = alert_send(admin_user, people)
    client.force_login(staff_user)
    assert client.get(LEDGER).status_code == 403
    assert client.get(f"{LEDGER}alert/{alert.pk}/export/").status_code == 403
    assert client.get(f"{LEDGER}export/").status_code == 403


def test_it_shows_an_alerts_ledger_on_its_watch_page_with_export_links(admin_user, manager, people, client):
    alert = alert_send(admin_user, people, scheduled_for=timezone.now() + timedelta(hours=1))
    notification_cancel(alert, by=manager)
    client.force_login(admin_user)

    page = client.get(f"/admin/notifications/notification/{alert.pk}/change/")

    ledger = page.context["ledger"]
    assert [row["entry"].event for row in ledger["entries"]] == ["drafted", "content", "sent", "cancelled"]
    assert ledger["chain"]["intact"] and ledger["chain_sentence"] == "intact"
    html = page.content.decode()
    assert 'id="ledger"' in html and "Morgan Reyes (e5000001)" in html
    as_json = client.get(ledger["json_url"])
    as_csv = client.get(ledger["csv_url"])
    assert json.loads(b"".join(as_json.streaming_content))["scope"]["notification"] == alert.pk
    assert as_csv["Content-Disposition"] == f'attachment; filename="ledger-alert-{alert.pk}.csv"'
    assert client.get(f"{LEDGER}alert/{alert.pk}/export/?format=xml").status_code == 400
    assert client.get(f"{LEDGER}alert/{alert.pk + 100}/export/").status_code == 404


def test_it_shows_no_ledger_section_on_other_notifications_nor_to_staff_without_the_role(
        admin_user, staff_user, cohort, people, client):
    cohort.members.add(*people)
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="announcement",
                                        title="Room change", body="B12", audience={"cohorts": [cohort.code]})
    alert, _ = notification_send(sender=admin_user, notifier="security", title="Gas leak", body="Leave now.",
                                 data={"severity": "high"}, audience={"cohorts": [cohort.code]})
    client.force_login(admin_user)
    assert "ledger" not in client.get(f"/admin/notifications/notification/{notification.pk}/change/").context
    client.force_login(staff_user)
    page = client.get(f"/admin/notifications/notification/{alert.pk}/change/")
    assert page.status_code == 200 and "ledger" not in page.context


def test_it_exports_a_period_from_the_console_and_refuses_a_bad_one(admin_user, people, client):
    alert_send(admin_user, people)
    client.force_login(admin_user)
    today = timezone.localdate()

    response = client.get(f"{LEDGER}export/", {"since": str(today), "until": str(today), "format": "json"})
    bad = client.get(f"{LEDGER}export/", {"since": str(today), "until": str(today - timedelta(days=2)),
                                          "format": "csv"})

    assert [e["event"] for e in json.loads(b"".join(response.streaming_content))["entries"]] == ["drafted", "content", "sent"]
    assert bad.status_code == 400
    assert bad.context["range_form"].errors == {"since": ["The start of the period must be before its end."]}


# --- retention and erasure ----------------------------------------------------------------------

def test_it_keeps_ledger_entries_seven_years_and_purges_older_ones(admin_user, people, settings):
    earlier = Notification(pk=10**9, notifier="security")  # an alert of long ago, purged since: its ledger stays
    gone = LedgerEntry.record(earlier, Event.COMPLETED, data={"n": 1}, at=years_ago(8))
    kept = LedgerEntry.record(earlier, Event.COMPLETED, data={"n": 2}, at=years_ago(7) + timedelta(days=2))
    alert_send(admin_user, people)
    settings.LEDGER_RETENTION_YEARS = 10

    assert retention_purge()["ledger_entries"] == 0  # 10 years: both stay

    settings.LEDGER_RETENTION_YEARS = 7
    assert retention_purge() == {"deliveries": 0, "inbox_messages": 0, "ledger_entries": 1}
    assert not LedgerEntry.objects.filter(pk=gone.pk).exists() and LedgerEntry.objects.filter(pk=kept.pk).exists()
    assert LedgerEntry.verify_chain() is None  # the oldest entries go: the rest still chains
    assert json.loads(content_of(jwt_client(admin_user).get(f"{API}notifications/{10**9}/ledger/")))["scope"] == {
        "notification": 10**9, "incident": None}


@pytest.mark.parametrize("years", ["5", "6", "seven"])
def test_it_refuses_a_ledger_retention_below_seven_years(admin_user, people, settings, monkeypatch, years):
    alert = alert_send(admin_user, people)
    LedgerEntry.record(alert, Event.COMPLETED, at=years_ago(8))
    fan_out_and_send(alert)
    Delivery.objects.update(created_at=timezone.now() - timedelta(days=400))
    monkeypatch.setenv("LEDGER_RETENTION_YEARS", years)
    settings.LEDGER_RETENTION_YEARS = int(years) if years.isdigit() else 7

    errors = [e for e in run_checks() if e.id == "flashnotify.E060"]

    assert len(errors) == 1 and "at least 7" in errors[0].msg and "LEDGER_RETENTION_YEARS" in errors[0].hint
    if years.isdigit():
        with pytest.raises(ImproperlyConfigured, match="at least 7"):
            retention_purge()
        assert LedgerEntry.objects.count() == 5 and Delivery.objects.count() == 6  # nothing at all deleted


def test_it_never_touches_the_ledger_when_deliveries_or_notifications_are_purged(admin_user, people,
                                                                                 closed_breakers):
    alert = alert_send(admin_user, people)
    fan_out_and_send(alert)
    before = list(LedgerEntry.objects.values_list("id", "digest"))

    deliveries_purge(older_than=timedelta(0), now=timezone.now() + timedelta(seconds=1))
    Notification.objects.filter(pk=alert.pk).delete()

    assert not Delivery.objects.exists()
    assert list(LedgerEntry.objects.values_list("id", "digest")) == before
    assert [e for _id, e in before] and events(alert.pk)[-1] == Event.COMPLETED


def test_it_keeps_the_ledger_when_a_person_is_erased_and_says_so(admin_user, manager, people):
    alert = alert_send(managing(manager, people), people, scheduled_for=timezone.now() + timedelta(hours=1))
    notification_cancel(alert, by=manager)

    done = user_erase(user=manager, by=admin_user)

    assert done["ledger_entries_kept"] == 4
    assert set(LedgerEntry.objects.values_list("actor", flat=True)) == {"Morgan Reyes (e5000001)"}
    assert LedgerEntry.verify_chain() is None
