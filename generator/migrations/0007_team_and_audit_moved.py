# The team and the audit log now live in the accounts and audit apps (their
# migrations 0001 take the tables over); the generator forgets them, dropping nothing.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("generator", "0006_team_moderation_audit"),
        ("accounts", "0001_initial"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="generation",
            options={"ordering": ("-created_at", "-id")},
        ),
        # The tables already exist (created by the generator app's migrations): only
        # Django's idea of which app owns them changes, so no row moves or is copied.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name="apitoken",
                    name="apitoken_user_recent",
                ),
                migrations.RemoveIndex(
                    model_name="auditevent",
                    name="auditevent_recent",
                ),
                migrations.RemoveIndex(
                    model_name="auditevent",
                    name="auditevent_action",
                ),
                migrations.RemoveField(
                    model_name="invitation",
                    name="created_by",
                ),
                migrations.RemoveField(
                    model_name="invitation",
                    name="used_by",
                ),
                migrations.RemoveField(
                    model_name="member",
                    name="user",
                ),
                migrations.RemoveIndex(
                    model_name="notification",
                    name="notification_unread",
                ),
                migrations.RemoveField(
                    model_name="apitoken",
                    name="user",
                ),
                migrations.RemoveField(
                    model_name="auditevent",
                    name="actor",
                ),
                migrations.DeleteModel(
                    name="Invitation",
                ),
                migrations.DeleteModel(
                    name="Member",
                ),
                migrations.RemoveField(
                    model_name="notification",
                    name="user",
                ),
                migrations.DeleteModel(
                    name="ApiToken",
                ),
                migrations.DeleteModel(
                    name="AuditEvent",
                ),
                migrations.DeleteModel(
                    name="Notification",
                ),
            ],
            database_operations=[],
        ),
    ]
