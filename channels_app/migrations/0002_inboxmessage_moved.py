"""InboxMessage now belongs to notifications (notifications 0005): forget it here, keep its table."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("channels_app", "0001_initial"),
        ("notifications", "0005_inboxmessage_moved"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="InboxMessage")]),
    ]
