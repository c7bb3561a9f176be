"""The console's compose pages: the form, the confirmation that tells what sending will do, the send.

`compose_view` is NotificationAdmin's add view. Thin like every door: validation is
`notification_validate`, the counts are the engine's planner (`notification_plan_counts`), the
send is `notification_send`, the estimate of an emergency alert `draft_estimate`; this module only
words them for a person.
"""

import copy

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation import ngettext

from accounts.models import Cohort
from accounts.roles import console_role
from channels_app.constants import Category, Channel
from channels_app.mixins import sms_count

from . import services
from .console_forms import ComposeForm
from .models import CategoryDefault, Delivery, Notification
from .selectors import audience_users, notification_plan_counts
from .services.estimate import draft_estimate, duration_text

COMPOSE_TEMPLATE = "admin/notifications/notification/compose.html"
CONFIRM_TEMPLATE = "admin/notifications/notification/confirm.html"
DRAFT_FIELDS = ("notifier", "category", "priority", "title", "body", "translations", "data", "channels", "audience",
                "deadline", "requires_ack", "checkin", "alert_status", "escalation_delay_minutes", "escalation_ladder")
# Reasons that hold a delivery (it is sent later), not refuse it.
HELD = (Delivery.Reason.QUIET_HOURS, Delivery.Reason.DIGEST)


# What each rendered part is called on the preview.
PART_LABELS = {"subject": gettext_lazy("Subject"), "text": gettext_lazy("Text"), "title": gettext_lazy("Title"),
               "body": gettext_lazy("Message"), "link": gettext_lazy("Link")}

LANGUAGE_NAMES = {"en": gettext_lazy("English"), "fr": gettext_lazy("French")}


class NobodyReceives(Exception):
    pass


def compose_view(model_admin, request):
    """Compose → confirm (what sending will do, per channel, and a preview) → send."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    form = ComposeForm(request.POST or None, user=request.user, is_admin=console_role(request.user) == "admin")
    context = {**model_admin.admin_site.each_context(request), "opts": model_admin.opts,
               "title": _("Compose a notification"), "form": form, "has_view_permission": True,
               "sms_max_segments": settings.SMS_MAX_SEGMENTS}
    if request.method == "POST" and "_edit" in request.POST:
        return TemplateResponse(request, COMPOSE_TEMPLATE, context)  # "Start again": what was typed, kept
    if request.method == "POST" and form.is_valid():
        kwargs = form.send_kwargs()
        try:
            # What sending would refuse is refused here, before the confirmation is shown.
            cleaned = services.notification_validate(**kwargs)
            services.send_check(request.user, cleaned)
            draft = Notification(**{name: cleaned[name] for name in DRAFT_FIELDS})
            recipients = audience_users(cleaned["audience"])
            plan = notification_plan_counts(draft, recipients)
            if request.POST.get("stage") == "confirm":
                if not receiving(plan):
                    raise NobodyReceives
                return compose_send(model_admin, request, form, kwargs)
            context.update(compose_confirmation(request, draft, recipients, plan),
                           scheduled_for=cleaned["scheduled_for"], zone=form.zone.key,
                           awaiting_approval=draft.is_emergency and services.needs_approval(
                               sender=request.user, template=None, parent=None, fields=cleaned))
            if draft.is_emergency:  # before an emergency alert: how long to hand it over, what the SMS cost
                estimate = draft_estimate(draft, recipients, fallback_sample=request.user)
                context.update(estimate=estimate, estimate_time=duration_text(estimate["seconds"]))
            return TemplateResponse(request, CONFIRM_TEMPLATE, context)
        except NobodyReceives:
            form.add_error(None, _("Nobody would receive this notification on any channel: nothing was sent. "
                                   "Review the confirmation to see why."))
        except services.IdempotencyConflict:
            form.add_error(None, _("This form was already sent with other content; start again to send another."))
        except PermissionDenied as exc:
            form.add_error(None, str(exc) or _("You may not send to this audience."))
        except ValidationError as exc:
            form.add_service_errors(exc)
    return TemplateResponse(request, COMPOSE_TEMPLATE, context)


def receiving(plan):
    """Deliveries that sending would make now or hold for later (quiet hours, digest), all channels."""
    return sum(row["send"] + row["digest"] for row in plan["channels"].values())


def compose_confirmation(request, draft, recipients, plan):
    """The confirmation's context: per channel who receives and who does not and why, a preview per language."""
    rows = channel_rows(request, draft, plan)
    labels = dict(Channel.choices)
    shown = [row["channel"] for row in rows if row["receive"]]
    previews = []
    for language in ["en", *draft.translations]:
        sample = copy.copy(recipients.filter(language=language).order_by("pk").first()
                           or recipients.order_by("pk").first() or request.user)
        sample.language = language  # in memory only: the version of that language, as that person would see it
        rendered = services.notification_preview(draft, sample)
        sms = rendered.get(Channel.SMS, {}).get("text")
        previews.append({
            "language": language, "language_name": LANGUAGE_NAMES.get(language, language),
            "sample": sample, "channels": [(labels[channel], preview_parts(rendered[channel]))
                                           for channel in shown if channel in rendered],
            "sms": {**sms_count(sms), "cut": sms_count(sms)["segments"] > settings.SMS_MAX_SEGMENTS}
            if sms is not None else None,
        })
    return {"plan": plan, "rows": rows, "receiving": receiving(plan), "previews": previews, "draft": draft,
            "not_shown": [row["label"] for row in rows if not row["receive"]],
            "sms_received": Channel.SMS in shown, "sms_max_segments": settings.SMS_MAX_SEGMENTS,
            "title": _("Confirm: %(title)s") % {"title": draft.title}}


def preview_parts(parts):
    """[(part's name, text)] of one channel's rendering; the HTML email is the text one, styled."""
    return [(PART_LABELS.get(part, part), text) for part, text in parts.items() if part != "html"]


def channel_rows(request, draft, plan):
    """[{channel, label, receive, held, not_received, reasons: [{label, people, explanation, link}], added}]:
    the requested channels first, then any the engine adds (a fallback, the inbox of an acknowledgement)."""
    labels = dict(Channel.choices)
    requested = list(draft.channels)
    channels = requested + sorted(set(plan["channels"]) - set(requested))
    can_change_defaults = request.user.has_perm("notifications.change_categorydefault")
    rows = []
    for channel in channels:
        counts = plan["channels"].get(channel, {"send": 0, "digest": 0, "skipped": 0, "reasons": {}})
        reasons = [reason_line(code, people, draft, channel, can_change_defaults)
                   for code, people in sorted(counts["reasons"].items(), key=lambda item: -item[1])
                   if code not in HELD]
        held = [reason_line(code, counts["reasons"][code], draft, channel, can_change_defaults)
                for code in HELD if counts["reasons"].get(code)]
        rows.append({"channel": channel, "label": labels.get(channel, channel), "people": plan["people"],
                     "receive": counts["send"] + counts["digest"], "not_received": counts["skipped"],
                     "reasons": reasons, "held": held, "added": channel not in requested})
    return rows


def reason_line(code, people, draft, channel, can_change_defaults):
    """One reason of a channel's row, as a staff member reads it, with where to change it when it is a setting."""
    category = str(dict(Category.choices).get(draft.category, draft.category))
    line = {"code": code, "people": people, "label": str(Delivery.Reason(code).label), "explanation": "", "link": ""}
    if code == Delivery.Reason.DEFAULT_OFF:
        # The setting itself says it better than the reason's name ("Category default off").
        line["label"] = _("off by default for “%(category)s” on %(channel)s") % {
            "category": category, "channel": dict(Channel.choices).get(channel, channel)}
        if can_change_defaults:  # the row to change, or (a built-in default) the form that makes one
            line["link"] = category_default_url(draft.category, channel)
    elif code == Delivery.Reason.OPTED_OUT:
        line["explanation"] = _("turned off by the recipients themselves in their preferences")
    elif code == Delivery.Reason.PHONE_NOT_VERIFIED:
        line["explanation"] = _("no verified phone number")
    elif code == Delivery.Reason.NO_PUSH_SUBSCRIPTION:
        line["explanation"] = _("web push not enabled in any of their browsers")
    elif code == Delivery.Reason.QUIET_HOURS:
        line["explanation"] = _("sent when their quiet hours end")
    elif code == Delivery.Reason.DIGEST:
        line["explanation"] = _("in their daily digest email")
    return line


def category_default_url(category, channel):
    row = CategoryDefault.objects.filter(category=category, channel=channel).first()
    if row is not None:
        return reverse("admin:notifications_categorydefault_change", args=[row.pk])
    return reverse("admin:notifications_categorydefault_add") + "?" + urlencode({"category": category,
                                                                                 "channel": channel})


def audience_summary(audience):
    """The audience as a person reads it: cohorts by name, a few usernames, roles, everyone."""
    parts = []
    if audience.get("cohorts"):
        cohorts = Cohort.objects.filter(code__in=audience["cohorts"]).order_by("name")
        parts.append(ngettext("cohort %(names)s", "cohorts %(names)s", len(cohorts)) % {
            "names": ", ".join(f"{cohort.name} ({cohort.code})" for cohort in cohorts)})
    if audience.get("users"):
        users = audience["users"]
        names = ", ".join(users[:5]) + (_(" and %(n)d more") % {"n": len(users) - 5} if len(users) > 5 else "")
        parts.append(ngettext("%(n)d person (%(names)s)", "%(n)d people (%(names)s)", len(users)) % {
            "n": len(users), "names": names})
    if audience.get("roles"):
        parts.append(ngettext("role %(names)s", "roles %(names)s", len(audience["roles"])) % {
            "names": ", ".join(audience["roles"])})
    if audience.get("everyone"):
        parts.append(_("everyone"))
    return "; ".join(parts)


def compose_send(model_admin, request, form, kwargs):
    key = f"console:{request.user.pk}:{form.cleaned_data['token']}"
    notification, created = services.notification_send(sender=request.user, idempotency_key=key, **kwargs)
    if created and notification.status == Notification.Status.AWAITING_APPROVAL:
        model_admin.log_addition(request, notification, [{"added": {}}])
        model_admin.message_user(request, _("“%(title)s” is awaiting approval: a second person with the emergency "
                                            "permission must approve it before it is sent to %(audience)s.") % {
            "title": notification.title, "audience": audience_summary(notification.audience)}, messages.WARNING)
    elif created:
        model_admin.log_addition(request, notification, [{"added": {}}])
        model_admin.message_user(request, _("“%(title)s” accepted for %(audience)s.") % {
            "title": notification.title, "audience": audience_summary(notification.audience)})
    else:
        model_admin.message_user(request, _("This notification was already sent (the form was submitted twice)."),
                                 messages.WARNING)
    return redirect(reverse("admin:notifications_notification_change", args=[notification.pk]))
