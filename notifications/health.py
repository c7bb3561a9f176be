"""The console's Health pages: per channel the circuit breaker, error rate and latency, and a test send.

Registered on the console site by notifications/admin.py (`admin.site.register_page`).
"""

from datetime import datetime
from datetime import timezone as dt_timezone

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation import ngettext

from accounts.roles import console_role
from channels_app.breaker import CircuitBreaker
from channels_app.constants import Channel
from channels_app.models import PerformanceMetric
from channels_app.selectors import channel_health, channel_status, channels_status
from flashnotify.charts import line_chart

from .selectors import push_subscription_count
from .services import TESTABLE_CHANNELS, channel_send_test


def _can_view_health(request):
    return request.user.has_perm("channels_app.view_performancemetric")


def health_index(request):
    if not _can_view_health(request):
        raise PermissionDenied
    context = {**admin.site.each_context(request), "title": _("Channel health"), "rows": channels_status()}
    return TemplateResponse(request, "admin/health/index.html", context)


def test_address(channel, user):
    """Where a test send to `user` goes, as the page names it: their email, their phone, their browsers;
    "" when they have none (the page then says so and offers no button)."""
    if channel == Channel.EMAIL:
        return user.email
    if channel == Channel.SMS:
        return user.phone
    if channel == Channel.PUSH:
        count = push_subscription_count(user)
        return ngettext("your %(count)d browser with push turned on", "your %(count)d browsers with push turned on",
                        count) % {"count": count} if count else ""
    return ""


def health_channel(request, channel):
    """One channel: breaker (with reset), error rate and latency over 24 hours, and a test send."""
    if not _can_view_health(request):
        raise PermissionDenied
    if channel not in Channel.values:
        raise Http404("No such channel.")
    status = channel_status(channel)
    provider = status["provider"]
    is_admin = console_role(request.user) == "admin"
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "reset" and provider:
            if not is_admin:
                raise PermissionDenied
            CircuitBreaker(provider).reset()
            _log(request, f"Reset the {provider} circuit breaker.")
            messages.success(request, _("The %(provider)s circuit breaker is closed again.") % {"provider": provider})
        elif action == "test" and channel in TESTABLE_CHANNELS:
            address = test_address(channel, request.user)
            if not address:
                messages.error(request, _("No test sent: %(missing)s") % {"missing": _NO_ADDRESS[channel]})
                return redirect(reverse("admin:health_channel", args=[channel]))
            try:
                outcome = channel_send_test(channel=channel, user=request.user)
            except ValidationError as exc:
                messages.error(request, _("No test sent: %(problem)s") % {"problem": " ".join(exc.messages)})
            else:
                _log(request, f"Sent a test message on {channel} to {address}: "
                              f"{'accepted ' + outcome.provider_message_id if outcome.ok else outcome.error}")
                if outcome.ok:
                    messages.success(request, _("Test message to %(address)s accepted by the %(channel)s provider: "
                                                "%(id)s.") % {"address": address, "channel": channel,
                                                              "id": outcome.provider_message_id or _("no message id")})
                else:
                    messages.error(request, _("The %(channel)s provider did not accept the test message to "
                                              "%(address)s: %(error)s") % {"channel": channel, "address": address,
                                                                           "error": outcome.error})
        return redirect(reverse("admin:health_channel", args=[channel]))
    now = timezone.now()
    health = channel_health(channel, now=now)
    labels = [timezone.localtime(b["start"]).strftime("%H:%M") for b in health["buckets"]]
    label = status["label"]
    empty = _("No message in the last 24 hours.")
    error_chart = line_chart({_("error rate %"): [None if b["error_rate"] is None else b["error_rate"] * 100
                                                  for b in health["buckets"]]},
                             labels=labels, unit="%", y_max=100, empty=empty,
                             title=_("%(channel)s error rate, last 24 hours") % {"channel": label})
    latency_chart = line_chart({_("p50 ms"): [b["p50"] for b in health["buckets"]],
                                _("p95 ms"): [b["p95"] for b in health["buckets"]]},
                               labels=labels, unit=" ms", empty=empty,
                               title=_("%(channel)s send latency per message, last 24 hours") % {"channel": label})
    context = {
        **admin.site.each_context(request), "title": _("Health: %(channel)s") % {"channel": label},
        "channel": channel, "label": label, "status": status,
        "breaker": status["breaker"], "provider": provider,
        "totals": health["totals"], "buckets": health["buckets"], "error_chart": error_chart,
        "latency_chart": latency_chart, "can_reset": is_admin, "can_test": channel in TESTABLE_CHANNELS,
        "test_address": test_address(channel, request.user),
        "no_address": _NO_ADDRESS.get(channel, ""),
    }
    if context["breaker"] and context["breaker"]["opened_at"]:
        context["opened_at"] = datetime.fromtimestamp(context["breaker"]["opened_at"], tz=dt_timezone.utc)
    return TemplateResponse(request, "admin/health/channel.html", context)


_NO_ADDRESS = {
    Channel.EMAIL: gettext_lazy("your account has no email address. An administrator can add one on your user page."),
    Channel.SMS: gettext_lazy("your account has no mobile phone number. Add and confirm one on your Phone page "
                       "(/phone/), then try again."),
    Channel.PUSH: gettext_lazy("you have not turned on push notifications in any browser. Turn them on from your "
                        "Preferences page, then try again."),
}


def _log(request, message):
    """Record a console operation on the channel's metrics in the admin history."""
    LogEntry.objects.create(
        user_id=request.user.pk, content_type_id=ContentType.objects.get_for_model(PerformanceMetric).pk,
        object_id="", object_repr="channel health", action_flag=CHANGE, change_message=message,
    )
