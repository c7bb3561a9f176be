"""Incident templates: saving a version of one, and sending an emergency alert from one.

`incident_template_save` is what every door that edits a template calls (the console's admin, a
data load): it validates and raises the version on every change of content, keeping a snapshot of
each version. `alert_from_template` fills a template's {variables} and sends it through
`notification_send`, recording the template and the version it used.
"""

import logging
import re

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from channels_app.constants import Severity
from channels_app.registry import NotificationMeta

from ..models import IncidentTemplate, IncidentTemplateVersion, Notification
from .sending import (
    EMERGENCY_PERMISSION, clean_audience, clean_escalation, clean_translations, notification_send, text_problem,
)

logger = logging.getLogger(__name__)


# What a version covers: a change of any of these raises the template's version.
CONTENT_FIELDS = ("title", "body", "translations", "variables", "severity", "channels", "audience",
                  "escalation_delay_minutes", "escalation_ladder", "checkin")

VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VARIABLE_VALUE_MAX = 500
# A variable's value lands in a title too: one line, no control characters.
VALUE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def template_content(template):
    """The content of `template` that a version covers, as JSON."""
    return {name: getattr(template, name) for name in CONTENT_FIELDS}


def template_texts(template):
    """[(field, text)]: the title, the body and each translation's, where {variables} may appear."""
    texts = [("title", template.title or ""), ("body", template.body or "")]
    for language, version in sorted((template.translations or {}).items()):
        if isinstance(version, dict):
            texts += [(f"title_{language}", str(version.get("title") or "")),
                      (f"body_{language}", str(version.get("body") or ""))]
    return texts


def incident_template_validate(template):
    """Check `template` (saved or not) as a send from it would be checked; raise ValidationError by field.

    The {variables} used in the title, the body and the translations are exactly those declared in
    `variables`; the texts pass `text_problem`; the channels are the security notifier's; the audience
    (which may be empty: chosen at send time) passes `clean_audience`; the escalation `clean_escalation`;
    the severity is one of Severity. A translation's problems are by `title_<lang>`/`body_<lang>`.
    Cleans `channels`, `audience`, `translations` and the escalation in place.
    """
    notifier_cls = NotificationMeta.registry[Notification.EMERGENCY_NOTIFIER]
    errors = {}

    def add(field, message):
        errors.setdefault(field, []).append(message)

    if not (template.name or "").strip():
        add("name", _("A name is required."))
    if template.kind not in IncidentTemplate.Kind.values:
        add("kind", _("Unknown kind %(kind)r; choose one of %(choices)s.")
            % {"kind": template.kind, "choices": ", ".join(IncidentTemplate.Kind.values)})
    if template.severity not in Severity.values:
        add("severity", _("Unknown severity %(severity)r; choose one of %(choices)s.")
            % {"severity": template.severity, "choices": ", ".join(Severity.values)})

    variables = template.variables
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        add("variables", _('Give the variables as a list of names, e.g. ["building", "time"].'))
        variables = []
    bad_names = [v for v in variables if not VARIABLE_NAME.fullmatch(v)]
    if bad_names:
        add("variables", _("A variable's name is letters, digits and _, not starting with a digit: %(names)s.")
            % {"names": ", ".join(bad_names)})
    declared = set(variables)

    if not (template.title or "").strip():
        add("title", _("A title is required."))
    if not (template.body or "").strip():
        add("body", _("A body is required."))
    try:
        template.translations = clean_translations(template.translations)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            for message in messages:
                add(field, message)
    used = set()
    for field, text in template_texts(template):
        problem = text_problem(text, title=field.startswith("title"))
        if problem:
            add(field, problem)
        names = set(VARIABLE.findall(text))
        used |= names
        unknown = sorted(names - declared)
        if unknown:
            add(field, _("Undeclared variable(s) %(names)s: declare them in the variables, or remove them.")
                % {"names": ", ".join("{%s}" % name for name in unknown)})
    unused = sorted(declared - used)
    if unused:
        add("variables", _("Variable(s) declared but used in no text: %(names)s.") % {"names": ", ".join(unused)})

    channels = template.channels
    if not isinstance(channels, list):
        add("channels", _('Give the channels as a list, e.g. ["push", "sms"].'))
        channels = []
    channels = list(dict.fromkeys(channels))
    outside = [str(c) for c in channels if c not in notifier_cls.channels]
    if outside:
        add("channels", _("An emergency alert does not send on %(channels)s; it sends on %(choices)s.")
            % {"channels": ", ".join(outside), "choices": ", ".join(notifier_cls.channels)})
    else:
        template.channels = channels

    if template.audience:
        if not isinstance(template.audience, dict):
            add("audience", _('Give the audience as {"cohorts": [...], "users": [...], "roles": [...], '
                              '"everyone": true}, or leave it empty.'))
        else:
            try:
                template.audience = clean_audience(template.audience)
            except ValidationError as exc:
                for message in exc.message_dict.get("audience", []):
                    add("audience", message)
    else:
        template.audience = {}

    if not isinstance(template.escalation_ladder or [], list):
        add("escalation_ladder", _('Give the escalation ladder as a list of channels, e.g. ["push", "sms"].'))
        template.escalation_ladder = []
    try:
        template.escalation_delay_minutes, template.escalation_ladder = clean_escalation(
            notifier_cls, channels=channels or list(notifier_cls.channels),
            delay_minutes=template.escalation_delay_minutes, ladder=template.escalation_ladder)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            for message in messages:
                add(field, message)
    template.checkin = bool(template.checkin)
    if errors:
        raise ValidationError(errors)
    return template


def incident_template_save(template, *, by):
    """Validate and save `template`; on every change of its content raise `version` and keep a snapshot.

    A new template starts at version 1. A change of name, kind or `active` alone keeps the version.
    Returns the template (its `version` as saved).
    """
    incident_template_validate(template)
    content = template_content(template)
    with transaction.atomic():
        if template.pk is None:
            template.version = 1
            template.save()
            changed = True
        else:
            stored = IncidentTemplate.objects.select_for_update().get(pk=template.pk)
            changed = template_content(stored) != content
            template.version = stored.version + 1 if changed else stored.version
            template.save()
        if changed:
            IncidentTemplateVersion.objects.create(template=template, version=template.version, content=content,
                                                   saved_by=by)
    if changed:
        logger.info("incident template %s saved as version %s", template.pk, template.version,
                    extra={"template_id": template.pk, "template_version": template.version})
    return template


def incident_template_deactivate(template, *, by):
    """Take `template` out of the choices for sending (kept, with its versions: alerts refer to them)."""
    if template.active:
        template.active = False
        template.save(update_fields=["active", "updated_at"])
        logger.info("incident template %s deactivated by %s", template.pk, by.pk if by else None,
                    extra={"template_id": template.pk})
    return template


def clean_variables(template, variables):
    """{name: value} for every variable of `template`, each one line; ValidationError on `variables` naming
    the missing, unknown and unfit ones."""
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise ValidationError({"variables": [_("Give the variables as {name: value}.")]})
    declared = list(template.variables or [])
    values = {str(name): "" if value is None else str(value).strip() for name, value in variables.items()}
    errors = []
    unknown = sorted(set(values) - set(declared))
    if unknown:
        errors.append(_("Unknown variable(s) for this template: %(names)s; it has %(declared)s.")
                      % {"names": ", ".join(unknown), "declared": ", ".join(declared) or "—"})
    missing = [name for name in declared if not values.get(name)]
    if missing:
        errors.append(_("Missing variable(s): %(names)s.") % {"names": ", ".join(missing)})
    unfit = [name for name in declared if VALUE_FORBIDDEN.search(values.get(name, ""))]
    if unfit:
        errors.append(_("Each variable is one line of text without control characters: %(names)s is not.")
                      % {"names": ", ".join(unfit)})
    long = [name for name in declared if len(values.get(name, "")) > VARIABLE_VALUE_MAX]
    if long:
        errors.append(_("A variable holds at most %(max)d characters: %(names)s is longer.")
                      % {"max": VARIABLE_VALUE_MAX, "names": ", ".join(long)})
    if errors:
        raise ValidationError({"variables": errors})
    return {name: values[name] for name in declared}


def fill(text, values):
    """`text` with each {name} replaced by its value (nothing else of the text is interpreted)."""
    return VARIABLE.sub(lambda match: values.get(match.group(1), match.group(0)), text or "")


def template_send_fields(template, *, variables, alert_status=None, audience=None, checkin=None):
    """The fields of `notification_send` (and of `alert_estimate`) that sending `template` would use.

    Fills the variables into the title, the body and the translations; the audience and the check-in
    default to the template's. Raises ValidationError (`template` when it is inactive, `variables`).
    """
    if not template.active:
        raise ValidationError({"template": [_("The template “%(name)s” is no longer active: it cannot be sent.")
                                            % {"name": template.name}]})
    values = clean_variables(template, variables)
    translations = {language: {"title": fill(version.get("title"), values), "body": fill(version.get("body"), values)}
                    for language, version in (template.translations or {}).items() if isinstance(version, dict)}
    return dict(
        notifier=Notification.EMERGENCY_NOTIFIER, title=fill(template.title, values), body=fill(template.body, values),
        translations=translations, channels=list(template.channels) or None,
        audience=template.audience if audience is None else audience,
        data={"severity": template.severity}, alert_status=alert_status,
        checkin=template.checkin if checkin is None else bool(checkin),
        escalation_delay_minutes=template.escalation_delay_minutes, escalation_ladder=list(template.escalation_ladder),
    )


def alert_check_permission(sender):
    """PermissionDenied unless `sender` may send emergency alerts (notifications.send_emergency)."""
    if sender is None or not sender.has_perm(EMERGENCY_PERMISSION):
        raise PermissionDenied(_("Sending an emergency alert needs the emergency permission."))


def alert_from_template(template, *, sender, variables, alert_status=None, audience=None, checkin=None, api_key=None,
                        idempotency_key=None, incident=None, thread_role=""):
    """Send an emergency alert from `template`: its variables filled, its channels, severity and escalation.

    Needs `notifications.send_emergency` (PermissionDenied). An inactive template, a missing or unknown
    variable, or one that is not a single line is refused (ValidationError by field); the rest is
    validated by `notification_send`, which records the template and its version. An alert from a
    template goes at once (the two-person rule applies to free text). `incident` and `thread_role`
    send it in an existing incident's thread (an update, the all-clear). Returns (notification, created).
    """
    alert_check_permission(sender)
    # The version sent is the one whose content is sent: read both together.
    template = IncidentTemplate.objects.get(pk=template.pk)
    fields = template_send_fields(template, variables=variables, alert_status=alert_status, audience=audience,
                                  checkin=checkin)
    notification, created = notification_send(
        sender=sender, api_key=api_key, idempotency_key=idempotency_key, template=template,
        template_version=template.version, incident=incident, thread_role=thread_role, **fields)
    if created:
        logger.info("emergency alert %s sent from template %s v%s", notification.pk, template.pk, template.version,
                    extra={"notification_id": notification.pk, "template_id": template.pk,
                           "template_version": template.version})
    return notification, created
