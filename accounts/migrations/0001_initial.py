# The team (members, invitations, notifications, API tokens) moves here from the
# generator app, keeping its tables and rows.

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _relabel(apps, schema_editor, models_, old, new):
    # Content types are the rows permissions and admin log entries point at; moving
    # their label keeps those pointing at the same models. A fresh database has none
    # yet (they are created after migrating), so this only matters on an upgrade.
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in models_:
        if not ContentType.objects.using(db).filter(app_label=new, model=model).exists():
            ContentType.objects.using(db).filter(app_label=old, model=model).update(app_label=new)


MOVED = ("apitoken", "invitation", "member", "notification")
# Capabilities held by the role groups: declared on Generation before, on Member now.
CAPABILITIES = ("generate", "moderate", "manage_members")


def forwards(apps, schema_editor):
    _relabel(apps, schema_editor, MOVED, "generator", "accounts")
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    old = ContentType.objects.using(db).filter(app_label="generator", model="generation").first()
    if old is None:
        return
    new, _ = ContentType.objects.using(db).get_or_create(app_label="accounts", model="member")
    # The same permission rows, so every group and person holding them keeps them.
    Permission.objects.using(db).filter(content_type=old, codename__in=CAPABILITIES).update(
        content_type=new
    )


def backwards(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    new = ContentType.objects.using(db).filter(app_label="accounts", model="member").first()
    old = ContentType.objects.using(db).filter(app_label="generator", model="generation").first()
    if new is not None and old is not None:
        Permission.objects.using(db).filter(content_type=new, codename__in=CAPABILITIES).update(
            content_type=old
        )
    _relabel(apps, schema_editor, MOVED, "accounts", "generator")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("generator", "0006_team_moderation_audit"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables already exist (created by the generator app's migrations): only
        # Django's idea of which app owns them changes, so no row moves or is copied.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Invitation",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("token", models.CharField(max_length=64, unique=True)),
                        ("role", models.CharField(max_length=20)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("expires_at", models.DateTimeField()),
                        ("used_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "used_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "generator_invitation",
                    },
                ),
                migrations.CreateModel(
                    name="Member",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "role",
                            models.CharField(
                                choices=[
                                    ("admin", "Admin"),
                                    ("moderator", "Moderator"),
                                    ("member", "Member"),
                                    ("viewer", "Viewer"),
                                ],
                                default="member",
                                max_length=10,
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Waiting for approval"),
                                    ("active", "Active"),
                                    ("suspended", "Suspended"),
                                ],
                                default="active",
                                max_length=10,
                            ),
                        ),
                        ("status_reason", models.CharField(blank=True, max_length=500)),
                        (
                            "default_visibility",
                            models.CharField(
                                blank=True,
                                choices=[
                                    ("private", "Private"),
                                    ("shared", "Shared with the team"),
                                ],
                                max_length=8,
                            ),
                        ),
                        (
                            "monthly_budget_usd",
                            models.DecimalField(
                                blank=True, decimal_places=2, max_digits=10, null=True
                            ),
                        ),
                        ("max_active", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "user",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="member",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "generator_member",
                        "permissions": [
                            ("generate", "Can generate images"),
                            (
                                "moderate",
                                "Can review, hide and restore any image and suspend users",
                            ),
                            ("manage_members", "Can approve, invite and change members"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="ApiToken",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("uuid", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        ("name", models.CharField(max_length=100)),
                        ("prefix", models.CharField(max_length=16)),
                        ("token_hash", models.CharField(max_length=64, unique=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("last_used_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="api_tokens",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "generator_apitoken",
                        "ordering": ("-created_at", "-id"),
                        "indexes": [
                            models.Index(
                                fields=["user", "-created_at", "-id"], name="apitoken_user_recent"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Notification",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("text", models.TextField()),
                        ("link", models.CharField(blank=True, max_length=300)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("read_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="notifications",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "generator_notification",
                        "ordering": ("-created_at", "-id"),
                        "indexes": [
                            models.Index(
                                condition=models.Q(("read_at", None)),
                                fields=["user"],
                                name="notification_unread",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
