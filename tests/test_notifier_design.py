"""The seed's pieces, each doing the one job its docstring states.

Metaclasses (NotificationMeta, ChannelMeta, TemplateMeta, ConfigMeta), the Email / Phone /
Priority descriptors, and the class decorators wrapping the send step. Sends go through the
real notifier sequence against local peers.
"""

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from channels_app.base import Message, Notifier, Recipient
from channels_app.config import ChannelConfig, SMSConfig
from channels_app.constants import Channel, Priority
from channels_app.content import TemplateSet
from channels_app.decorators import _metrics_buffer, circuit_breaker, track_performance, validate_config
from channels_app.mixins import ArchiveMixin, EmailMixin, SMSMixin
from channels_app.models import PerformanceMetric
from channels_app.registry import ChannelMeta, ConfigMeta, NotificationMeta, TemplateMeta, get_notifier, send_step
from notifications.models import Delivery, Notification
from notifications.services import channel_send_test, notification_send

from .conftest import make_user
from .delivery_helpers import closed_breakers, fan_out_and_send  # noqa: F401
from .test_channels import subscribe, vapid  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("closed_breakers")]


@pytest.fixture
def registries():
    """Leave the registries as they were, whatever a test declared."""
    saved = [dict(r) for r in (NotificationMeta.registry, ChannelMeta.channels, TemplateMeta.registry,
                               ConfigMeta.registry)]
    yield
    for registry, before in zip((NotificationMeta.registry, ChannelMeta.channels, TemplateMeta.registry,
                                 ConfigMeta.registry), saved):
        registry.clear()
        registry.update(before)


# --- NotificationMeta: the registry and the required-field validators ------------------------

def test_it_registers_every_concrete_notifier_and_skips_the_abstract_base():
    assert {"academic", "security", "digest"} <= set(NotificationMeta.registry)
    assert Notifier not in NotificationMeta.registry.values()
    assert type(get_notifier("security")).__name__ == "SecurityNotifier"


def test_it_gives_a_notifier_the_channels_of_its_mixins_in_order(registries):
    class Probe(SMSMixin, EmailMixin, Notifier):
        key = "probe"

    assert Probe.channels == (Channel.SMS, Channel.EMAIL)
    assert set(Probe.steps) == {Channel.SMS, Channel.EMAIL}


def test_it_refuses_a_duplicate_or_missing_key(registries):
    with pytest.raises(ImproperlyConfigured, match="'academic' is used by"):
        class Again(EmailMixin, Notifier):
            key = "academic"
    with pytest.raises(ImproperlyConfigured, match="must declare a `key`"):
        class Nameless(EmailMixin, Notifier):
            pass


def test_it_builds_a_validator_from_required_fields_that_every_door_runs(admin_user):
    with pytest.raises(ValidationError) as error:
        get_notifier("security").validate_data({"location": "Library"})
    assert error.value.message_dict == {"data": ["SecurityNotifier requires 'severity' in data."]}

    with pytest.raises(ValidationError) as error:
        notification_send(sender=admin_user, notifier="security", title="Fire drill", body="Leave by the stairs.",
                          audience={"everyone": True})
    assert "data" in error.value.message_dict
    assert not Notification.objects.exists()


# --- ChannelMeta: one mixin per channel, with its one send step ----------------------------

def test_it_registers_one_mixin_per_channel_with_its_send_step(registries):
    assert ChannelMeta.channels[Channel.EMAIL] is EmailMixin
    assert ChannelMeta.channels[Channel.INBOX] is ArchiveMixin
    assert EmailMixin.step_name == "send_email"

    with pytest.raises(ImproperlyConfigured, match="Two channel mixins claim 'email'"):
        class SecondEmail(metaclass=ChannelMeta):
            channel = Channel.EMAIL

            @send_step
            def send(self, messages):
                return []

    with pytest.raises(ImproperlyConfigured, match="exactly one method with @send_step"):
        class NoStep(metaclass=ChannelMeta):
            channel = "fax"


# --- TemplateMeta: template sets, most specific first --------------------------------------

def test_it_orders_template_sets_from_most_specific_to_default(registries):
    names = [s.__name__ for s in TemplateMeta.sets_for("academic", "deadline")]
    assert names == ["AcademicDeadlineTemplates", "AcademicTemplates", "DefaultTemplates"]

    class GradeTemplates(TemplateSet):
        category = "grade"

    assert GradeTemplates.directory == "notifications/category/grade"
    assert [s.__name__ for s in TemplateMeta.sets_for("academic", "grade")][0] == "GradeTemplates"
    with pytest.raises(ImproperlyConfigured, match="both claim"):
        class GradeAgain(TemplateSet):
            category = "grade"


# --- ConfigMeta and validate_config: a channel that is not configured fails with the reason ------

def test_it_registers_one_configuration_per_channel(registries):
    assert ConfigMeta.registry[Channel.SMS] is SMSConfig
    with pytest.raises(ImproperlyConfigured, match="Two configurations"):
        class OtherSMS(ChannelConfig):
            channel = Channel.SMS


def test_it_fails_every_message_of_an_unconfigured_channel_with_what_is_missing(admin_user, settings):
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""
    settings.EMERGENCY_TWO_PERSON_RULE = False  # the alert goes at once (the rule is tested in test_emergency_approval)
    student = make_user("s9100001", phone="+33612345678")
    student.phone_verified_at = student.date_joined
    student.save()

    notification, _ = notification_send(sender=admin_user, notifier="security", title="Gas leak", body="Leave B.",
                                        data={"severity": "high"}, channels=["sms"],
                                        audience={"users": [student.username]})
    fan_out_and_send(notification)

    delivery = Delivery.objects.get(notification=notification, channel="sms")
    assert delivery.status == "failed"
    assert delivery.last_error == ("sms is not configured: TWILIO_ACCOUNT_SID is not set; "
                                   "TWILIO_AUTH_TOKEN is not set; one of TWILIO_MESSAGING_SERVICE_SID or "
                                   "TWILIO_FROM_NUMBER must be set")


# --- the class decorators, each wrapping the mixin's send step ---------------------------------

def test_it_wraps_the_send_step_in_config_then_breaker_then_the_step(registries):
    calls = []

    class ProbeConfig(ChannelConfig):
        channel = "probe-channel"
        required = ("PROBE_SETTING",)

    @validate_config(ProbeConfig)
    @circuit_breaker("probe-provider")
    class ProbeMixin(metaclass=ChannelMeta):
        channel = "probe-channel"

        @send_step
        def send_probe(self, messages):
            """Send probes."""
            calls.append(len(messages))
            return []

    assert ProbeMixin.send_probe.__name__ == "send_probe"  # functools.wraps
    assert ProbeMixin.send_probe.__doc__ == "Send probes."
    assert ProbeMixin.breaker_provider == "probe-provider" and ProbeMixin.config is ProbeConfig
    notification = Notification(pk=1, notifier="probe", title="t", body="b")
    message = Message(delivery_id=7, channel="probe-channel", recipient=Recipient(user_id=1),
                      notification=notification)
    [outcome] = ProbeMixin().send_probe([message])
    assert (outcome.ok, outcome.permanent, outcome.error) == (
        False, True, "probe-channel is not configured: PROBE_SETTING is not set")
    assert calls == []


def test_it_times_each_channel_step_of_a_notifier_into_performance_metrics(smtp_peer, admin_user):
    @track_performance
    class Timed(EmailMixin, Notifier):
        key = "timed-probe"

    try:
        assert Timed.steps[Channel.EMAIL].__name__ == "send_email"
        outcome = channel_send_test(channel="email", address="ops@example.edu")
        assert outcome.ok
        metric = PerformanceMetric.objects.get(channel="email")
        assert (metric.notifier, metric.operation, metric.items, metric.succeeded) == ("academic", "send", 1, 1)
        assert not _metrics_buffer  # flushed by the engine in one insert
    finally:
        NotificationMeta.registry.pop("timed-probe", None)


# --- descriptors: values that the channels read are validated when set ---------------------------

def test_it_validates_and_normalises_addresses_on_a_recipient():
    recipient = Recipient(user_id=1, email=" ada@example.edu ", phone="+33 6 12 34 56 78")
    assert (recipient.email, recipient.phone) == ("ada@example.edu", "+33612345678")
    assert Recipient.email.name == "email"  # on the class, the descriptor itself
    with pytest.raises(ValidationError) as error:
        Recipient(user_id=1, email="not-an-address")
    assert "email" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        Recipient(user_id=1, phone="12")
    assert "phone" in error.value.message_dict


def test_it_validates_the_priority_that_email_and_push_read(smtp_peer, http_peer, vapid, admin_user):
    with pytest.raises(ValidationError, match="not a priority"):
        Message(delivery_id=1, channel="email", recipient=Recipient(user_id=1),
                notification=Notification(title="t", body="b", priority="bogus"))

    push_service = http_peer(lambda request: (201, {}, b""))
    student = make_user("s9100002")
    subscribe(student, push_service.url + "/push/urgent")
    notification, _ = notification_send(sender=admin_user, notifier="academic", category="timetable",
                                        priority=Priority.HIGH, title="Exam moved", body="Now in hall C.",
                                        channels=["email", "push"], audience={"users": [student.username]})
    fan_out_and_send(notification)

    (request,) = push_service.requests
    assert {k.lower(): v for k, v in request["headers"].items()}["urgency"] == "high"
    (email,) = smtp_peer.messages
    assert email["Importance"] == "high"
