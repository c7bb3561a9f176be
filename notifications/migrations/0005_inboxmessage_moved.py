"""InboxMessage moves from channels_app to notifications: state only, the table stays as it is."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label="notifications", model="inboxmessage").exists():
        ContentType.objects.using(db).filter(app_label="channels_app", model="inboxmessage").update(
            app_label="notifications")


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0004_merge_recipient_context"),
        ("channels_app", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name="InboxMessage",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                    ("title", models.CharField(max_length=200)),
                    ("body", models.TextField()),
                    ("category", models.CharField(db_index=True, max_length=20)),
                    ("created_at", models.DateTimeField(auto_now_add=True)),
                    ("read_at", models.DateTimeField(blank=True, null=True)),
                    ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                    ("notification", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                       related_name="inbox_messages", to="notifications.notification")),
                    ("recipient", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                    related_name="inbox_messages", to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    "verbose_name": "inbox message",
                    "verbose_name_plural": "inbox messages",
                    "db_table": "channels_app_inboxmessage",
                    "ordering": ["-created_at", "-id"],
                    "indexes": [models.Index(fields=["recipient", "-created_at"], name="inbox_recipient_recent"),
                                models.Index(fields=["recipient", "read_at"], name="inbox_recipient_unread")],
                    "constraints": [models.UniqueConstraint(fields=("notification", "recipient"),
                                                            name="inbox_one_per_recipient")],
                },
            ),
        ]),
        migrations.RunPython(move_content_type, migrations.RunPython.noop),
    ]
