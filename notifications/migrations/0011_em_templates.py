"""Incident template versions, and the starter library of incident templates every install ships with.

The library is English and French, with the variables `building`, `time` and `instructions`; an
Admin adapts it in the console (each change raises the template's version). Its content is frozen
here as it was shipped: later changes belong to the installs, not to this migration.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


ALL_CHANNELS = ["push", "sms", "email", "inbox"]

STARTER_LIBRARY = [
    {
        "name": "Active threat: shelter in place", "kind": "active_threat", "severity": "critical",
        "variables": ["building", "time", "instructions"],
        "title": "Active threat near {building}: shelter in place",
        "body": "An active threat was reported near {building} at {time}. Shelter in place now: lock or barricade "
                "the door, silence your phone, stay away from windows and out of sight. {instructions} "
                "Stay where you are until the all-clear.",
        "translations": {"fr": {
            "title": "Menace active près de {building} : confinez-vous",
            "body": "Une menace active a été signalée près de {building} à {time}. Confinez-vous maintenant : "
                    "verrouillez ou barricadez la porte, mettez votre téléphone en silencieux, éloignez-vous des "
                    "fenêtres et restez hors de vue. {instructions} Restez où vous êtes jusqu'à la fin de "
                    "l'alerte."}},
        "escalation_delay_minutes": 5, "escalation_ladder": ["push", "sms", "email"], "checkin": True,
    },
    {
        "name": "Severe weather", "kind": "severe_weather", "severity": "high",
        "variables": ["time", "instructions"],
        "title": "Severe weather warning from {time}",
        "body": "Severe weather is expected on campus from {time}. {instructions} Stay indoors, away from windows, "
                "and follow the instructions of campus staff.",
        "translations": {"fr": {
            "title": "Alerte météo à partir de {time}",
            "body": "Des intempéries violentes sont attendues sur le campus à partir de {time}. {instructions} "
                    "Restez à l'intérieur, loin des fenêtres, et suivez les consignes du personnel du campus."}},
        "escalation_delay_minutes": None, "escalation_ladder": [], "checkin": False,
    },
    {
        "name": "Fire or evacuation", "kind": "fire_evacuation", "severity": "critical",
        "variables": ["building", "instructions"],
        "title": "Evacuate {building} now",
        "body": "Leave {building} now by the nearest safe exit. Do not use the lifts. {instructions} "
                "Go to the assembly point and wait for instructions.",
        "translations": {"fr": {
            "title": "Évacuez {building} maintenant",
            "body": "Quittez {building} maintenant par la sortie sûre la plus proche. N'utilisez pas les "
                    "ascenseurs. {instructions} Rendez-vous au point de rassemblement et attendez les consignes."}},
        "escalation_delay_minutes": None, "escalation_ladder": [], "checkin": False,
    },
    {
        "name": "Campus closure", "kind": "campus_closure", "severity": "moderate",
        "variables": ["time", "instructions"],
        "title": "Campus closed from {time}",
        "body": "The campus is closed from {time}. {instructions} Check your email and the university website "
                "for updates.",
        "translations": {"fr": {
            "title": "Campus fermé à partir de {time}",
            "body": "Le campus est fermé à partir de {time}. {instructions} Consultez vos courriels et le site de "
                    "l'université pour les mises à jour."}},
        "escalation_delay_minutes": None, "escalation_ladder": [], "checkin": False,
    },
    {
        "name": "Utility outage", "kind": "utility_outage", "severity": "moderate",
        "variables": ["building", "time", "instructions"],
        "title": "Utility outage in {building}",
        "body": "A utility outage (power, water, heating or network) affects {building} since {time}. "
                "{instructions} We will send an update when service is restored.",
        "translations": {"fr": {
            "title": "Coupure de service à {building}",
            "body": "Une coupure (électricité, eau, chauffage ou réseau) touche {building} depuis {time}. "
                    "{instructions} Nous enverrons une mise à jour lorsque le service sera rétabli."}},
        "escalation_delay_minutes": None, "escalation_ladder": [], "checkin": False,
    },
    {
        "name": "All clear", "kind": "all_clear", "severity": "low",
        "variables": ["time", "instructions"],
        "title": "All clear",
        "body": "The emergency is over as of {time}. {instructions} Thank you for following the instructions.",
        "translations": {"fr": {
            "title": "Fin de l'alerte",
            "body": "L'urgence est terminée depuis {time}. {instructions} Merci d'avoir suivi les consignes."}},
        "escalation_delay_minutes": None, "escalation_ladder": [], "checkin": False,
    },
]

CONTENT_FIELDS = ("title", "body", "translations", "variables", "severity", "channels", "audience",
                  "escalation_delay_minutes", "escalation_ladder", "checkin")


def add_starter_library(apps, schema_editor):
    IncidentTemplate = apps.get_model("notifications", "IncidentTemplate")
    IncidentTemplateVersion = apps.get_model("notifications", "IncidentTemplateVersion")
    for entry in STARTER_LIBRARY:
        if IncidentTemplate.objects.filter(name=entry["name"]).exists():
            continue  # an install that made one of that name keeps its own
        template = IncidentTemplate.objects.create(channels=ALL_CHANNELS, audience={}, version=1, active=True,
                                                   **entry)
        IncidentTemplateVersion.objects.create(
            template=template, version=1, content={name: getattr(template, name) for name in CONTENT_FIELDS})


def remove_starter_library(apps, schema_editor):
    IncidentTemplate = apps.get_model("notifications", "IncidentTemplate")
    Notification = apps.get_model("notifications", "Notification")
    used = Notification.objects.filter(template__isnull=False).values("template_id")
    IncidentTemplate.objects.filter(name__in=[entry["name"] for entry in STARTER_LIBRARY]).exclude(
        pk__in=used).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0010_emergency'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='IncidentTemplateVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.PositiveIntegerField(verbose_name='version')),
                ('content', models.JSONField(default=dict, verbose_name='content')),
                ('saved_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='saved at')),
                ('saved_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='saved by')),
                ('template', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='notifications.incidenttemplate', verbose_name='incident template')),
            ],
            options={
                'verbose_name': 'incident template version',
                'verbose_name_plural': 'incident template versions',
                'ordering': ['template', '-version'],
                'constraints': [models.UniqueConstraint(fields=('template', 'version'), name='incident_template_version')],
            },
        ),
        migrations.RunPython(add_starter_library, remove_starter_library),
    ]
