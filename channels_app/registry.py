"""The registries: small metaclasses in the manner of Django's ModelBase.

Each skips its abstract base, refuses a duplicate key and exposes a plain dict. The
concrete classes are imported (and so registered) from ChannelsConfig.ready().
"""

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.translation import gettext as _


def send_step(function):
    """Mark the one method of a channel mixin that sends a batch of its messages.

    The step takes `(self, messages)` and yields one `Outcome` per message, as each is known
    (a list will do for a step that sends in one call); each message is sent in its own `try`
    whose errors go to `channels_app.errors.outcome_for_error`. ChannelMeta
    finds it, the class decorators wrap it, and the notifier's fixed sequence calls it.
    """
    function.is_send_step = True
    return function


class ChannelMeta(type):
    """Registers every channel mixin (a class that declares `channel`) with its send step.

    `ChannelMeta.channels` maps a channel key to its mixin; a mixin must mark exactly one
    method with `@send_step`, whose name is kept as `step_name`, and a second mixin for the
    same channel is refused.
    """

    channels = {}

    def __new__(mcs, name, bases, attrs, **kwargs):
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        channel = attrs.get("channel")
        if channel:
            if channel in ChannelMeta.channels:
                raise ImproperlyConfigured(f"Two channel mixins claim {str(channel)!r}: "
                                           f"{ChannelMeta.channels[channel].__name__} and {name}.")
            steps = [key for key, value in attrs.items() if getattr(value, "is_send_step", False)]
            if len(steps) != 1:
                raise ImproperlyConfigured(f"Channel mixin {name} must mark exactly one method with @send_step.")
            cls.step_name = steps[0]
            ChannelMeta.channels[channel] = cls
        return cls


class NotificationMeta(ChannelMeta):
    """Registers concrete notifiers under `key` and builds their required-field validator.

    A notifier's channels are the channel mixins it is composed of, in MRO order, and
    `steps` maps each channel to its mixin's (decorated) send step; its `required_fields`
    (names in `Notification.data`) become `validate_data()`.
    """

    registry = {}

    def __new__(mcs, name, bases, attrs, **kwargs):
        abstract = attrs.pop("abstract", False)
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        if abstract or not any(isinstance(base, NotificationMeta) for base in bases):
            return cls
        key = attrs.get("key")
        if not key:
            raise ImproperlyConfigured(f"Notifier {name} must declare a `key`.")
        if key in mcs.registry:
            raise ImproperlyConfigured(f"Notifier key {key!r} is used by {mcs.registry[key].__name__} and {name}.")
        mixins = [klass for klass in cls.__mro__ if "channel" in klass.__dict__]
        cls.channels = tuple(klass.channel for klass in mixins)
        cls.steps = {klass.channel: klass.__dict__[klass.step_name] for klass in mixins}
        cls.validate_data = mcs.build_validator(name, tuple(getattr(cls, "required_fields", ())))
        mcs.registry[key] = cls
        return cls

    @staticmethod
    def build_validator(notifier_name, required):
        def validate_data(data):
            missing = [field for field in required if data.get(field) in (None, "")]
            if missing:
                raise ValidationError(
                    {"data": [_("%(notifier)s requires %(field)r in data.")
                              % {"notifier": notifier_name, "field": field} for field in missing]},
                    code="required_field",
                )

        validate_data.required_fields = required
        return staticmethod(validate_data)


class ConfigMeta(type):
    """Registers channel configurations (`channels_app.config`), one per channel.

    `validate_config` refuses a channel's sends while its configuration has problems, and the
    deploy check `channels_app.W00x` reports them at start.
    """

    registry = {}

    def __new__(mcs, name, bases, attrs, **kwargs):
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        channel = attrs.get("channel")
        if channel:
            if channel in mcs.registry:
                raise ImproperlyConfigured(f"Two configurations for channel {str(channel)!r}.")
            mcs.registry[channel] = cls
        return cls


class TemplateMeta(type):
    """Registers template sets (channels_app.content.TemplateSet) under (notifier key, category).

    A set names a directory of `<channel>_<part>.<lang>.<ext>` files. Either key may be None:
    (None, None) is the default set every notifier falls back to. The start-up system check
    (channels_app.content) validates the registered sets against the notifiers' channels.
    """

    registry = {}

    def __new__(mcs, name, bases, attrs, **kwargs):
        abstract = attrs.pop("abstract", False)
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        if abstract or not any(isinstance(base, TemplateMeta) for base in bases):
            return cls
        key = (attrs.get("notifier"), attrs.get("category"))
        if key in mcs.registry:
            raise ImproperlyConfigured(f"Template sets {mcs.registry[key].__name__} and {name} both claim "
                                       f"notifier={key[0]!r}, category={key[1]!r}.")
        if not attrs.get("directory"):
            parts = ["notifications", key[0] or "default"] if key[0] or not key[1] else ["notifications", "category"]
            cls.directory = "/".join(parts + ([key[1]] if key[1] else []))
        mcs.registry[key] = cls
        return cls

    @classmethod
    def sets_for(mcs, notifier_key, category=None):
        """The template sets that apply to a notifier and category, most specific first."""
        keys = [(notifier_key, category), (None, category), (notifier_key, None), (None, None)]
        return [mcs.registry[key] for key in dict.fromkeys(keys) if key in mcs.registry]


def get_notifier(key):
    try:
        return NotificationMeta.registry[key]()
    except KeyError:
        raise ValidationError({"notifier": [f"Unknown notifier {key!r}; choose one of "
                                            f"{', '.join(sorted(NotificationMeta.registry))}."]}, code="invalid")


def notifier_choices():
    return [(key, cls.label) for key, cls in sorted(NotificationMeta.registry.items())
            if not getattr(cls, "internal", False)]
