"""The console's Watch page parts, its export, and a person's page: thin doors over console_selectors.

NotificationAdmin (notifications.admin) serves the Watch page and calls these; the person pages
are registered on the console site. Every view checks who asks: a notification through the
admin's own queryset (Staff: only theirs), a person through `people_visible_to`.
"""

import logging

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.roles import is_admin
from channels_app.constants import Channel
from channels_app.registry import get_notifier
from flashnotify.csv_export import csv_writer

from .console_selectors import (
    acknowledgement_list, channel_name, channel_rows, failed_deliveries, people_search, people_visible_to,
    person_cohorts, person_deliveries, person_reachability, reason_name, reason_rows, watch_actions, watch_progress,
)
from .console_forms import FollowUpForm
from .engine.escalation import escalation_delay, escalation_ladder
from .models import Delivery, Notification
from .selectors import acknowledgement_counts, drills, incident_thread, notification_reach, notification_roll_call
from .services.incidents import FollowUpRefused, incident_follow_up, incident_publish
from .services.preferences import preference_grid
from .services.sending import EMERGENCY_PERMISSION

logger = logging.getLogger(__name__)
User = get_user_model()
ACKS_PER_PAGE = 50
# The statuses a channel row counts, in the order a reader follows a delivery.
ROW_STATUSES = (Delivery.Status.QUEUED, Delivery.Status.SENDING, Delivery.Status.RETRYING, Delivery.Status.SENT,
                Delivery.Status.DELIVERED, Delivery.Status.FAILED, Delivery.Status.SKIPPED,
                Delivery.Status.CANCELLED)


def person_url(user_id):
    return reverse("admin:person", args=[user_id])


def person_name(user):
    """ "Léa Martin (s1000001)", or the username alone when there is no name."""
    name = user.get_full_name()
    return f"{name} ({user.username})" if name else user.username


def delivery_reason(delivery):
    code = delivery.reason_code
    return reason_name(code, delivery.skip_reason) if code or delivery.skip_reason else ""


def _lower_first(text):
    return text[:1].lower() + text[1:]


def delivery_title(delivery):
    """ "Room change → Léa Martin (s1000001) by email: skipped — opted out" """
    statuses = dict(Delivery.Status.choices)
    values = {"title": delivery.notification.title, "person": person_name(delivery.recipient),
              "channel": channel_name(delivery.channel).lower(),
              "status": _lower_first(str(statuses.get(delivery.status, delivery.status)))}
    reason = _lower_first(delivery_reason(delivery))
    if reason:
        return _("%(title)s → %(person)s by %(channel)s: %(status)s — %(reason)s") % {**values, "reason": reason}
    return _("%(title)s → %(person)s by %(channel)s: %(status)s") % values


def progress_sentence(progress):
    """The header's sentence: what the progress bar shows, in words."""
    values = {"reached": progress["reached"], "audience": progress["audience"], "percent": progress["percent"]}
    if progress["state"] == "scheduled":
        when = timezone.localtime(progress["scheduled_for"]) if progress["scheduled_for"] else None
        return _("Scheduled: sending starts %(when)s (%(zone)s) for %(audience)s recipients.") % {
            **values, "when": formats.date_format(when, "DATETIME_FORMAT") if when else "—",
            "zone": timezone.get_current_timezone_name()}
    if progress["state"] == "awaiting":
        return _("Awaiting approval: nothing is sent to its %(audience)s recipients until a second person with the "
                 "emergency permission approves it.") % values
    if progress["state"] == "cancelled_before_start":
        return _("Cancelled before sending started: none of its %(audience)s recipients was sent anything.") % values
    if progress["state"] == "cancelled":
        return _("Cancelled: %(reached)s of %(audience)s recipients were reached before it stopped.") % values
    if progress["state"] == "waiting":
        return _("Waiting for a worker to start sending to %(audience)s recipients.") % values
    if progress["state"] == "finished":
        return _("Finished: %(reached)s of %(audience)s recipients reached.") % values
    return _("Sending: %(reached)s of %(audience)s recipients reached so far, %(percent)s%% done.") % values


def roll_call_status(notification):
    """The check-in roll call as the Watch page shows it, in the viewer's language; None without a check-in."""
    if not notification.checkin:
        return None
    roll = notification_roll_call(notification)
    labels = {"need_help": _("Need help"), "safe": _("Safe"), "other": _("Answered something else"),
              "no_answer": _("No answer")}
    groups = []
    for key in ("need_help", "safe", "other", "no_answer"):
        entry = roll[key]
        people = [{"name": person["name"], "username": person["username"], "person_url": person_url(person["id"]),
                   "phone": person.get("phone", ""), "answer": person.get("answer", ""),
                   "answered_at": formats.date_format(timezone.localtime(person["answered_at"]), "DATETIME_FORMAT")
                   if person.get("answered_at") else ""} for person in entry["people"]]
        more = entry["count"] - len(people)
        groups.append({"key": key, "label": str(labels[key]), "count": entry["count"], "people": people,
                       "more": ngettext("and %(more)d more", "and %(more)d more", more) % {"more": more}
                       if more > 0 else ""})
    counts = {key: roll[key]["count"] for key in labels}
    sentence = _("Of %(recipients)s people reached: %(safe)s safe, %(need_help)s need help, %(other)s answered "
                 "something else, %(no_answer)s have not answered.") % {"recipients": roll["recipients"], **counts}
    return {"recipients": roll["recipients"], "sentence": sentence, "groups": groups}


def watch_status(notification):
    """Everything the Watch page refreshes while a notification runs, in the viewer's language."""
    progress = watch_progress(notification)
    statuses = dict(Delivery.Status.choices)
    acks = acknowledgement_counts(notification) if notification.requires_ack else None
    return {
        **{key: value for key, value in progress.items() if key != "scheduled_for"},
        "sentence": progress_sentence(progress),
        "statuses": [str(statuses[s]) for s in ROW_STATUSES],
        "channels": [{"key": f"{row['channel']}-{row['level']}", "label": row["label"], "level": row["level"],
                      "cells": [row["counts"].get(s, 0) for s in ROW_STATUSES], "total": row["total"]}
                     for row in channel_rows(notification)],
        "reasons": reason_rows(notification),
        "failed": [{"name": d.recipient.get_full_name() or d.recipient.username, "username": d.recipient.username,
                    "person_url": person_url(d.recipient_id), "channel": channel_name(d.channel),
                    "attempts": d.attempts, "error": d.last_error,
                    "failed_at": formats.date_format(timezone.localtime(d.failed_at), "DATETIME_FORMAT")
                    if d.failed_at else ""} for d in failed_deliveries(notification)],
        "acks": {"asked": notification.requires_ack, **(acks or {})},
        "actions": watch_actions(notification, acks=acks),
        "roll_call": roll_call_status(notification),
    }


def approval_context(user, notification):
    """The two-person rule on the Watch page: who drafted it, who approved or refused it, and whether this viewer
    may approve or refuse it (another person with the emergency permission) or is its drafter."""
    awaiting = notification.status == Notification.Status.AWAITING_APPROVAL
    drafter = notification.sender_id is not None and notification.sender_id == user.pk
    return {
        "awaiting": awaiting, "is_drafter": drafter,
        "drafted_by": person_name(notification.sender) if notification.sender else _("the system"),
        "approved_by": person_name(notification.approved_by) if notification.approved_by else "",
        "refused_by": person_name(notification.refused_by) if notification.refused_by else "",
        "can_decide": awaiting and not drafter and user.has_perm(EMERGENCY_PERMISSION),
    }


def escalation_context(notification):
    """How an alert asking for acknowledgement escalates: {"delay_minutes", "ladder" (channel names), "own"}."""
    if not notification.requires_ack:
        return None
    notifier = get_notifier(notification.notifier)
    ladder = escalation_ladder(notifier, notification)
    return {"delay_minutes": int(escalation_delay(notifier, notification).total_seconds() // 60),
            "ladder": [channel_name(channel) for channel in ladder],
            "escalates": len(ladder) > 1,
            "own": bool(notification.escalation_ladder or notification.escalation_delay_minutes)}


def watch_context(request, notification):
    """The Watch page's context: the live status, reach percentiles, and the page of acknowledgements asked for."""
    status = watch_status(notification)
    reach = notification_reach(notification)
    search, which = request.GET.get("ack_q", "").strip(), request.GET.get("ack", "")
    acks_page = None
    if notification.requires_ack:
        people = acknowledgement_list(notification, search=search, which=which)
        acks_page = Paginator(people, ACKS_PER_PAGE).get_page(request.GET.get("ack_page"))
    return {
        "status": status, "reach": reach, "audience": status["audience"],
        "unreached": [{"people": row["people"], "label": reason_name(row["reason"])} for row in reach["unreached"]],
        "acks_page": acks_page, "ack_q": search, "ack_which": which,
        "status_url": reverse("admin:notifications_notification_status", args=[notification.pk]),
        "export_url": reverse("admin:notifications_notification_export", args=[notification.pk]),
        "act_url": reverse("admin:notifications_notification_act", args=[notification.pk]),
        "approval": approval_context(request.user, notification), "escalation": escalation_context(notification),
    }


def watch_status_response(notification):
    return JsonResponse(watch_status(notification))


class _Echo:
    def write(self, value):
        return value


def delivery_export_response(notification, rows):
    """`rows` (an iterator) as a streamed CSV download, every cell formula-safe (flashnotify.csv_export)."""
    writer = csv_writer(_Echo())
    response = StreamingHttpResponse(("\ufeff" if i == 0 else "") + writer.writerow(row) for i, row in enumerate(rows))
    response["Content-Type"] = "text/csv; charset=utf-8"
    response["Content-Disposition"] = f'attachment; filename="notification-{notification.pk}-deliveries.csv"'
    logger.info("deliveries of notification %s exported", notification.pk, extra={"notification_id": notification.pk})
    return response


# --- a person ----------------------------------------------------------------------------------

def _visible_person(request, user_id):
    person = people_visible_to(request.user).filter(pk=user_id).first()
    if person is None:
        raise Http404(_("No such person, or not one you may look up."))
    return person


def preference_rows(person):
    """The grid as the engine applies it: [{"label", "mandatory", "cells": [{"channel", "on", "why"}]}]."""
    grid = preference_grid(person)
    rows = []
    for category in grid["categories"]:
        cells = []
        for channel in Channel.values:
            state = category["channels"][channel]
            if category["mandatory"]:
                why = _("always (security alerts reach everyone)")
            elif state["chosen"]:
                why = _("their choice")
            else:
                why = _("category default")
            cells.append({"channel": channel, "on": state["enabled"], "why": why})
        rows.append({"label": category["label"], "mandatory": category["mandatory"], "digest": category["digest"],
                     "cells": cells})
    return rows


def person_view(request, user_id):
    """One person: who they are, where they can be reached, their preferences as the engine applies them,
    their cohorts and their last deliveries with the reasons: "why didn't X get it?" on one page."""
    person = _visible_person(request, user_id)
    reach = person_reachability(person)
    unreachable = {Channel.EMAIL: "" if reach["email"] else _("no email address"),
                   Channel.SMS: "" if reach["phone_verified"] else (
                       _("phone number not verified") if reach["phone"] else _("no phone number")),
                   Channel.PUSH: "" if reach["push_subscriptions"] else _("no push subscription"),
                   Channel.INBOX: ""}
    deliveries = person_deliveries(request.user, person)
    context = {
        **admin.site.each_context(request),
        "title": person.get_full_name() or person.username, "person": person, "reach": reach,
        "channels": [(channel, channel_name(channel), unreachable[channel]) for channel in Channel.values],
        "grid": preference_rows(person), "cohorts": person_cohorts(person),
        "deliveries": [{"delivery": d, "reason": reason_name(d.reason_code, d.skip_reason) if d.reason_code
                        or d.skip_reason else "", "channel": channel_name(d.channel)} for d in deliveries],
        "can_edit": is_admin(request.user),
        "deliveries_url": reverse("admin:notifications_delivery_changelist") + f"?recipient__id__exact={person.pk}",
    }
    return TemplateResponse(request, "admin/people/person.html", context)


def people_view(request):
    """Find a person by name, username or email (among those the viewer may look up)."""
    query = request.GET.get("q", "").strip()
    found = people_search(request.user, query) if query else []
    context = {**admin.site.each_context(request), "title": _("Find a person"), "query": query, "found": found,
               "none_found": ngettext("%(count)d person found.", "%(count)d people found.", len(found))
               % {"count": len(found)}}
    return TemplateResponse(request, "admin/people/index.html", context)


# --- an emergency alert's incident: its thread, updates, the all-clear, the CAP feed --------------

FOLLOW_UP_KINDS = (Notification.ThreadRole.UPDATE, Notification.ThreadRole.ALL_CLEAR)


def incident_context(request, notification, forms=None):
    """The Watch page's incident section: the thread (with links to each one's page), the follow-up forms and
    the CAP toggle for those with the emergency permission; {} for a notification outside an incident."""
    incident = notification.incident if notification.incident_id else None
    if incident is None:
        return {}
    may_act = request.user.has_perm(EMERGENCY_PERMISSION)
    forms = forms or {}
    return {
        "incident": incident,
        "thread": [{"notification": item, "url": reverse("admin:notifications_notification_change", args=[item.pk]),
                    "current": item.pk == notification.pk} for item in incident_thread(incident)],
        "can_follow_up": may_act and incident.closed_at is None,
        "can_publish": may_act,
        "follow_up_forms": [(kind, Notification.ThreadRole(kind).label,
                             forms.get(kind) or FollowUpForm(prefix=kind)) for kind in FOLLOW_UP_KINDS],
        "follow_up_url": reverse("admin:notifications_notification_follow_up", args=[notification.pk]),
        "publish_url": reverse("admin:notifications_notification_publish", args=[notification.pk]),
        "cap_url": reverse("cap-document", args=[notification.pk]),
    }


def follow_up_submit(request, notification):
    """(sent notification or None, {kind: bound form}) for the Watch page's "Send an update" and "Send the
    all-clear" forms; refusals of the whole follow-up become a message."""
    if not request.user.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied
    kind = request.POST.get("kind")
    if kind not in FOLLOW_UP_KINDS:
        messages.error(request, _("Choose an update or the all-clear."))
        return None, {}
    form = FollowUpForm(request.POST, prefix=kind)
    if not form.is_valid():
        return None, {kind: form}
    try:
        sent, _created = incident_follow_up(
            notification, sender=request.user, kind=kind, title=form.cleaned_data["title"],
            body=form.cleaned_data["body"], translations=form.translations())
    except FollowUpRefused as exc:
        messages.error(request, exc.message)
        return None, {}
    except ValidationError as exc:
        form.add_service_errors(exc.message_dict)
        return None, {kind: form}
    if sent.status == Notification.Status.AWAITING_APPROVAL:
        messages.success(request, _("Saved: it goes once a second person with the emergency permission approves it."))
    elif kind == Notification.ThreadRole.ALL_CLEAR:
        messages.success(request, _("All-clear sent to the alert's recipients: the incident is closed, its "
                                    "escalations and reminders stopped."))
    else:
        messages.success(request, _("Update sent to the alert's recipients."))
    return sent, {}


def publish_submit(request, notification):
    """The CAP toggle: the incident public (anyone may read its CAP documents) or not."""
    public = request.POST.get("public") == "1"
    try:
        incident_publish(notification, by=request.user, public=public)
    except FollowUpRefused as exc:
        messages.error(request, exc.message)
        return
    messages.success(request, _("The incident is public in the CAP feed.") if public
                     else _("The incident is no longer public in the CAP feed: only signed-in readers see it."))


# --- drills and tests ------------------------------------------------------------------------

def drills_view(request):
    """Exercise and test alerts by year (date, title, sent by, approved by, reach, acknowledged): the record of the
    yearly test of the emergency system the Clery Act asks for. Staff with the emergency permission, and Admin."""
    if not request.user.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied
    this_year = timezone.localdate().year
    try:
        year = int(request.GET.get("year") or this_year)
    except ValueError:
        year = this_year
    year = min(max(year, 2000), 9999)
    rows = drills(request.user, year=year)
    context = {**admin.site.each_context(request), "title": _("Drills and tests"), "year": year, "rows": rows,
               "previous_year": year - 1, "next_year": year + 1 if year < this_year else None}
    return TemplateResponse(request, "admin/notifications/drills.html", context)
