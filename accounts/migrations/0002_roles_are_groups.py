# Roles are stored once, as Django groups with permissions: every user is put in the
# group of the role Member.role mirrored, the new capabilities are given to the Admins
# group, and the mirror column goes. Nothing else changes.

from django.conf import settings
from django.db import migrations

GROUPS = {"admin": "Admins", "moderator": "Moderators", "member": "Members", "viewer": "Viewers"}
CAPABILITIES = {
    "generate": "Can generate images",
    "moderate": "Can review, hide and restore any image and suspend users",
    "manage_members": "Can approve, invite and change members",
    "set_budgets": "Can set budgets and limits",
    "enable_models": "Can enable and disable models",
    "edit_policy": "Can edit the prompt policy",
}
DEFAULTS = {
    "admin": tuple(CAPABILITIES),
    "moderator": ("generate", "moderate"),
    "member": ("generate",),
    "viewer": (),
}
# Capabilities that did not exist before: roles that held everything get them.
NEW = ("set_budgets", "enable_models", "edit_policy")


def forwards(apps, schema_editor):
    db = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Member = apps.get_model("accounts", "Member")
    content_type, _ = ContentType.objects.using(db).get_or_create(
        app_label="accounts", model="member"
    )
    permissions = {}
    for codename, name in CAPABILITIES.items():
        permissions[codename], _ = Permission.objects.using(db).get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    groups = {}
    for role, name in GROUPS.items():
        group, created = Group.objects.using(db).get_or_create(name=name)
        if created:
            group.permissions.set([permissions[c] for c in DEFAULTS[role]])
        elif role == "admin":
            group.permissions.add(*[permissions[c] for c in NEW])
        groups[role] = group
    roles = dict(Member.objects.using(db).values_list("user_id", "role"))
    for user in User.objects.using(db).all():
        # Superusers were admins whatever their row said; users without a row, members.
        role = "admin" if user.is_superuser else roles.get(user.pk, "member")
        if role not in GROUPS:
            role = "member"
        user.groups.remove(*[g for r, g in groups.items() if r != role])
        user.groups.add(groups[role])
        is_admin = role == "admin"
        if user.is_superuser != is_admin or user.is_staff != is_admin:
            user.is_superuser = user.is_staff = is_admin
            user.save(update_fields=["is_superuser", "is_staff"])


def backwards(apps, schema_editor):
    db = schema_editor.connection.alias
    Member = apps.get_model("accounts", "Member")
    for member in Member.objects.using(db).select_related("user"):
        names = set(member.user.groups.values_list("name", flat=True))
        member.role = next((r for r, n in GROUPS.items() if n in names), "member")
        member.save(update_fields=["role"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.AlterModelOptions(
            name="member",
            options={
                "permissions": [
                    ("generate", "Can generate images"),
                    ("moderate", "Can review, hide and restore any image and suspend users"),
                    ("manage_members", "Can approve, invite and change members"),
                    ("set_budgets", "Can set budgets and limits"),
                    ("enable_models", "Can enable and disable models"),
                    ("edit_policy", "Can edit the prompt policy"),
                ]
            },
        ),
        migrations.RemoveField(model_name="member", name="role"),
    ]
