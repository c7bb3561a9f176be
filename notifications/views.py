"""Student pages. Every view checks who is asking; signed-link views check the signature."""

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from channels_app.constants import Category, Channel
from channels_app.models import PushSubscription
from .models import InboxMessage, Notification
from channels_app.subscriptions import push_subscription_delete, push_subscription_save

from .selectors import inbox_message_for, inbox_thread
from .services import inbox
from .forms import AccountSettingsForm, InboxFilterForm, PreferenceGridForm
from .links import link_check
from .services.preferences import preference_set, preferences_save

logger = logging.getLogger(__name__)

INBOX_PAGE_SIZE = 20


@login_required
@require_GET
def inbox_list(request):
    """The user's inbox, newest first, optionally one category, paginated (a fixed number of queries)."""
    form = InboxFilterForm(request.GET or None)
    category = form.cleaned_data["category"] if form.is_valid() else ""
    messages_ = (InboxMessage.objects.filter(recipient=request.user).select_related("notification")
                 .only("id", "title", "category", "created_at", "read_at", "acknowledged_at", "notification_id",
                       "notification__requires_ack", "notification__priority", "notification__thread_role",
                       "notification__incident_id"))
    if category:
        messages_ = messages_.filter(category=category)
    page = Paginator(messages_, INBOX_PAGE_SIZE).get_page(request.GET.get("page"))
    labels = dict(Category.choices)
    for message in page:
        message.category_label = labels.get(message.category, message.category)
    return render(request, "notifications/inbox.html", {"page": page, "filter_form": form, "category": category})


@login_required
@require_http_methods(["GET", "POST"])
def inbox_detail(request, notification_id):
    """A notification's full text. Opening it marks it read; POST acknowledges it when it asks for that."""
    message = inbox_message_for(request.user.pk, notification_id)  # a resend's link opens the family's message
    if message is None:
        raise Http404("No such message in your inbox.")
    if request.method == "POST":
        if message.notification.requires_ack:
            inbox.message_acknowledge(message)
            messages.success(request, _("Thank you: your acknowledgement is recorded."))
        return redirect("inbox-detail", notification_id=notification_id)
    inbox.message_mark_read(message)
    return render(request, "notifications/inbox_detail.html", {
        "message": message, "category_label": Category(message.category).label
        if message.category in Category.values else message.category,
        "thread": inbox_thread(request.user.pk, message.notification),
    })


def _describe_account_changes(form):
    described = []
    for name in form.changed_data:
        value = form.cleaned_data[name]
        if name == "language":
            value = dict(User.Language.choices)[value]
        elif name in ("quiet_hours_start", "quiet_hours_end"):
            value = formats.time_format(value, "TIME_FORMAT") if value else _("none")
        elif name == "digest_hour":
            value = f"{value:02d}:00"
        described.append(_("%(setting)s: %(value)s") % {"setting": form.fields[name].label, "value": value})
    return described


def _describe_grid_change(category, channel, enabled, digest):
    label = _("%(category)s by %(channel)s") % {"category": Category(category).label, "channel": Channel(channel).label}
    state = _("on") if enabled else _("off")
    if channel == Channel.EMAIL and enabled and digest:
        state = _("on, low-priority ones in a daily digest")
    return _("%(setting)s: %(value)s") % {"setting": label, "value": state}


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request):
    """The category × channel grid and the user's own settings. Saving says what changed."""
    user = request.user
    grid = PreferenceGridForm(request.POST or None, user=user)
    account = AccountSettingsForm(request.POST or None, instance=user)
    if request.method == "POST" and grid.is_valid() and account.is_valid():
        changes = grid.changes()
        channels, digests = {}, {}
        for category, channel, enabled, digest in changes:
            channels.setdefault(category, {})[channel] = enabled
            if digest is not None:
                digests[category] = digest
        preferences_save(user, channels=channels, digests=digests)
        account_changes = account.has_changed()
        if account_changes:
            account.save()
        with translation.override(user.language):
            described = [_describe_grid_change(*change) for change in changes] + _describe_account_changes(account)
            if described:
                messages.success(request, _("Your preferences are saved. What changed:"), extra_tags="changes")
                for line in described:
                    messages.info(request, line, extra_tags="change")
            else:
                messages.info(request, _("Nothing changed."))
        logger.info("preferences of user %s saved: %d change(s)", user.pk, len(described), extra={"user_id": user.pk})
        return redirect("preferences")
    return render(request, "notifications/preferences.html", {
        "grid": grid, "account": account, "channels": [Channel(c) for c in ("email", "sms", "push", "inbox")],
        "push_subscriptions": PushSubscription.objects.filter(user=user).order_by("-created_at"),
        "vapid_public_key": settings.VAPID_PUBLIC_KEY,
    })


@login_required
@require_POST
def push_subscription_create(request):
    """Store this browser's push subscription (JSON from the page's script, CSRF-protected)."""
    try:
        body = json.loads(request.body or b"{}")
        keys = body.get("keys") or {}
        push_subscription_save(user=request.user, endpoint=body.get("endpoint", ""), p256dh=keys.get("p256dh", ""),
                               auth=keys.get("auth", ""), user_agent=request.headers.get("User-Agent", ""))
    except (ValueError, AttributeError):
        return JsonResponse({"error": _("The subscription could not be read.")}, status=400)
    except ValidationError as exc:
        return JsonResponse({"error": _("The subscription was refused."), "detail": exc.message_dict}, status=400)
    return JsonResponse({"status": "subscribed"}, status=201)


@login_required
@require_POST
def push_subscription_remove(request):
    """Remove a push subscription: from the page's script (JSON endpoint) or the list's button (form id)."""
    if request.content_type == "application/json":
        try:
            endpoint = json.loads(request.body or b"{}").get("endpoint", "")
        except (ValueError, AttributeError):
            return JsonResponse({"error": _("The subscription could not be read.")}, status=400)
        removed = push_subscription_delete(user=request.user, endpoint=endpoint)
        return JsonResponse({"removed": removed})
    removed = push_subscription_delete(user=request.user, subscription_id=request.POST.get("id") or None)
    if removed:
        messages.success(request, _("Push notifications are turned off for that browser."))
    return redirect(reverse("preferences") + "#push")


@require_GET
@cache_control(max_age=0, no_cache=True)
def service_worker(request):
    """The push service worker, served from the site's root so its scope covers every page."""
    path = finders.find("js/sw.js")
    if not path:
        raise Http404("service worker missing")
    with open(path, "rb") as source:
        response = HttpResponse(source.read(), content_type="text/javascript; charset=utf-8")
    response["Service-Worker-Allowed"] = "/"
    return response


def _link_problem(request, problem):
    return render(request, "notifications/link_problem.html", {"problem": problem},
                  status=200 if problem == "preview" else 400)


def _user_language(user_id):
    return User.objects.filter(pk=user_id).values_list("language", flat=True).first()


@require_http_methods(["GET", "POST"])
def acknowledge(request, token):
    """Acknowledge from an email link, without signing in. GET shows a button (link scanners must not
    acknowledge for the student); POST acknowledges."""
    check = link_check("acknowledge", token)
    message = None
    if not check.problem:
        message = inbox_message_for(check.user_id, check.notification_id)
        if message is None:
            check.problem = "invalid"
    if check.problem:
        return _link_problem(request, check.problem)
    with translation.override(_user_language(check.user_id) or translation.get_language()):
        if request.method == "POST":
            inbox.message_acknowledge(message)
        return render(request, "notifications/acknowledge.html", {"message": message, "token": token})


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs without our CSRF cookie; the signed token authorises.
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    """Stop a category's emails from a link in one. GET asks (a link scanner must not unsubscribe anybody);
    POST, from the page's button or a mail client's one-click `List-Unsubscribe=One-Click`, does it."""
    check = link_check("unsubscribe", token)
    notification = None
    if not check.problem:
        notification = Notification.objects.filter(pk=check.notification_id).only("id", "category").first()
        if notification is None or not User.objects.filter(pk=check.user_id).exists():
            check.problem = "invalid"
    if check.problem:
        return _link_problem(request, check.problem)
    mandatory = notification.category == Category.SECURITY
    done = False
    if request.method == "POST" and not mandatory:
        preference_set(user_id=check.user_id, category=notification.category, channel=Channel.EMAIL, enabled=False)
        logger.info("user %s unsubscribed from %s emails", check.user_id, notification.category,
                    extra={"user_id": check.user_id, "notification_id": notification.pk})
        done = True
    with translation.override(_user_language(check.user_id) or translation.get_language()):
        return render(request, "notifications/unsubscribe.html", {
            "category_label": Category(notification.category).label, "token": token, "done": done,
            "mandatory": mandatory,
        })
