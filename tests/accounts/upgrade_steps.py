"""The two halves of the upgrade test, run as `python -m tests.accounts.upgrade_steps
build|check` in a process of their own against a scratch database (DATABASE_URL).

`build` makes the database the studio had before its apps were split: the migrations
up to generator 0006 and gallery 0002 (what the earlier code ran), with a row in every
table written through the historical models of that state, a stored file, a session
signed in through the old backend path and an API token. `check`, run after
`manage.py migrate`, reads it all back through today's code and prints what it found
as JSON for the test to judge.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from datetime import timedelta
from decimal import Decimal
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.crypto import salted_hmac  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

PASSWORD = "an old pass 42"
RAW_TOKEN = "sk-studio-" + "o" * 43
OLD_NODES = [
    # Django's own apps at their latest first, as a full `migrate` of that code ran them.
    ("contenttypes", None),
    ("auth", None),
    ("generator", "0006_team_moderation_audit"),
    ("gallery", "0002_report"),
    ("sessions", "0001_initial"),
    ("admin", "0003_logentry_add_action_flag_choices"),
    ("axes", None),
]
# username -> (old Member.role or None for no row, status, superuser)
PEOPLE = {
    "ada": ("admin", "active", True),
    "mona": ("moderator", "active", False),
    "theo": ("member", "active", False),
    "vera": ("viewer", "active", False),
    "sam": ("member", "suspended", False),
    "pete": ("member", "pending", False),
    "olga": (None, "active", False),
}
GROUPS = {"admin": "Admins", "moderator": "Moderators", "member": "Members", "viewer": "Viewers"}
OLD_GROUP_PERMISSIONS = {
    "admin": ("generate", "moderate", "manage_members"),
    "moderator": ("generate", "moderate"),
    "member": ("generate",),
    "viewer": (),
}
TABLES = [
    "auth_user",
    "auth_group",
    "auth_permission",
    "auth_user_groups",
    "auth_group_permissions",
    "django_admin_log",
    "django_session",
    "generator_generation",
    "generator_image",
    "generator_costentry",
    "generator_modelsetting",
    "generator_blockedterm",
    "generator_member",
    "generator_invitation",
    "generator_notification",
    "generator_apitoken",
    "generator_auditevent",
    "gallery_favourite",
    "gallery_collection",
    "gallery_collectionitem",
    "gallery_preferences",
    "gallery_report",
]


def counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        result = {}
        for table in TABLES:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            result[table] = cursor.fetchone()[0]
    return result


def png_bytes(colour: str) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 64), colour).save(out, "PNG")
    return out.getvalue()


def build() -> dict[str, Any]:  # one linear script: every table of the old schema, in order
    for app, name in OLD_NODES:
        call_command("migrate", app, *([name] if name else []), verbosity=0)
    loader = MigrationExecutor(connection).loader
    nodes = [(app, name) if name else loader.graph.leaf_nodes(app)[0] for app, name in OLD_NODES]
    apps = loader.project_state(nodes).apps
    get = apps.get_model
    User, Group, Permission = get("auth", "User"), get("auth", "Group"), get("auth", "Permission")
    ContentType, LogEntry = get("contenttypes", "ContentType"), get("admin", "LogEntry")
    Member, ApiToken = get("generator", "Member"), get("generator", "ApiToken")
    Generation, Image = get("generator", "Generation"), get("generator", "Image")

    # The role groups as the earlier code made them: permissions on Generation.
    generation_type = ContentType.objects.get(app_label="generator", model="generation")
    groups = {}
    for role, name in GROUPS.items():
        groups[role] = Group.objects.create(name=name)
        groups[role].permissions.set(
            Permission.objects.filter(
                content_type=generation_type, codename__in=OLD_GROUP_PERMISSIONS[role]
            )
        )
    users = {}
    for username, (role, status, superuser) in PEOPLE.items():
        user = User.objects.create(
            username=username,
            email=f"{username}@example.com",
            password=make_password(PASSWORD),
            is_superuser=superuser,
            is_staff=superuser,
        )
        users[username] = user
        if role is not None:
            Member.objects.create(
                user=user,
                role=role,
                status=status,
                status_reason="Spam" if status == "suspended" else "",
                monthly_budget_usd=Decimal("12.50") if username == "theo" else None,
                max_active=3 if username == "theo" else None,
                default_visibility="private" if username == "mona" else "",
            )
            user.groups.add(groups[role])
    theo, ada, mona = users["theo"], users["ada"], users["mona"]

    ApiToken.objects.create(
        user=theo,
        name="notebook",
        prefix=RAW_TOKEN[:14],
        token_hash=hashlib.sha256(RAW_TOKEN.encode()).hexdigest(),
    )
    now = timezone.now()
    generation = Generation.objects.create(
        owner=theo,
        model="flux-realism",
        prompt="An old lighthouse",
        params={"model": "flux-realism", "prompt": "An old lighthouse", "image_size": "square"},
        status="succeeded",
        step="mirror",
        visibility="shared",
        sweep_after=now,
        seed="123456789012345678901",
        estimated_usd=Decimal("0.0368"),
        finished_at=now,
    )
    name = f"generations/{generation.uuid}/0.png"
    media = settings.MEDIA_ROOT
    os.makedirs(os.path.join(media, os.path.dirname(name)), exist_ok=True)
    data = png_bytes("teal")
    with open(os.path.join(media, name), "wb") as fh:
        fh.write(data)
    thumb = f"generations/{generation.uuid}/0_thumb.webp"
    PILImage.new("RGB", (32, 32), "teal").save(os.path.join(media, thumb), "WEBP")
    image = Image.objects.create(
        generation=generation,
        index=0,
        file=name,
        thumbnail=thumb,
        width=64,
        height=64,
        format="png",
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    get("generator", "CostEntry").objects.create(
        generation=generation,
        owner=theo,
        model="flux-realism",
        images=1,
        estimated_usd=Decimal("0.0368"),
        credits_used=Decimal("12"),
    )
    get("generator", "ModelSetting").objects.create(model="dall-e-3", enabled=True, updated_by=ada)
    get("generator", "BlockedTerm").objects.create(pattern="forbidden", created_by=ada)
    get("generator", "Invitation").objects.create(
        token="i" * 32, role="viewer", created_by=ada, expires_at=now + timedelta(days=7)
    )
    get("generator", "Notification").objects.create(user=theo, text="Welcome back")
    get("generator", "AuditEvent").objects.create(
        actor=ada, actor_name="ada", action="member.role", target_type="user", target_id="3"
    )
    get("gallery", "Favourite").objects.create(user=ada, image=image)
    collection = get("gallery", "Collection").objects.create(owner=ada, name="Lighthouses")
    get("gallery", "CollectionItem").objects.create(collection=collection, image=image)
    get("gallery", "Preferences").objects.create(user=mona, nsfw="show")
    get("gallery", "Report").objects.create(image=image, reporter=mona, reason="spam")
    member_type = ContentType.objects.get(app_label="generator", model="member")
    LogEntry.objects.create(
        user=ada,
        content_type=member_type,
        object_id=str(Member.objects.get(user=theo).pk),
        object_repr="theo",
        action_flag=2,
        change_message="[]",
        action_time=now,
    )
    # A browser signed in before the upgrade: Django stores the backend's dotted path
    # and a hash of the password in the session.
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session["_auth_user_id"] = str(theo.pk)
    session["_auth_user_backend"] = "generator.auth.StudioBackend"
    session["_auth_user_hash"] = salted_hmac(
        "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash",
        theo.password,
        algorithm="sha256",
    ).hexdigest()
    session.create()
    return {
        "counts": counts(),
        "session": session.session_key,
        "generation": str(generation.uuid),
        "image": name,
        "image_sha256": hashlib.sha256(data).hexdigest(),
        "permission_ids": sorted(
            Permission.objects.filter(content_type=generation_type).values_list("pk", flat=True)
        ),
    }


def check() -> dict[str, Any]:  # reads back every kind of row the build step wrote
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.test import Client
    from django.test.utils import setup_test_environment

    from accounts import rules
    from accounts.models import ApiToken, Member
    from accounts.roles import role_of
    from audit.models import AuditEvent
    from gallery.models import Collection, Report
    from generator.models import CostEntry, Generation, Image

    setup_test_environment()
    User = get_user_model()
    from django.contrib.auth.models import Permission

    found: dict[str, Any] = {"counts": counts()}
    found["permission_ids"] = sorted(Permission.objects.values_list("pk", flat=True))
    # Signing in through the real login page: a redirect means the password matched.
    found["logins"] = {
        u: Client().post("/accounts/login/", {"username": u, "password": PASSWORD}).status_code
        == 302
        for u in PEOPLE
    }
    found["roles"] = {u: role_of(User.objects.get(username=u)) for u in PEOPLE}
    found["capabilities"] = {
        u: sorted(c for c in rules.CAPABILITIES if rules.has_capability(user, c))
        for u, user in ((u, User.objects.get(username=u)) for u in PEOPLE)
    }
    found["superusers"] = sorted(
        User.objects.filter(is_superuser=True).values_list("username", flat=True)
    )
    found["statuses"] = dict(Member.objects.values_list("user__username", "status"))
    theo_member = Member.objects.get(user__username="theo")
    found["theo_limits"] = [str(theo_member.monthly_budget_usd), theo_member.max_active]
    found["token_user"] = ApiToken.objects.get().user.username
    found["generation"] = list(
        Generation.objects.values_list("uuid", "seed", "status", "owner__username")[:1]
    )
    found["cost"] = str(CostEntry.objects.get().credits_used)
    # Images made before each had a seed of its own show their generation's.
    found["image_seeds"] = list(Image.objects.values_list("seed", flat=True))
    found["cost_source"] = CostEntry.objects.get().source
    found["collection"] = [c.name for c in Collection.objects.all()]
    found["report"] = Report.objects.get().reason
    found["audit"] = list(AuditEvent.objects.values_list("action", "actor_name"))
    log = LogEntry.objects.select_related("content_type").get()
    found["log_entry_type"] = [log.content_type.app_label, log.content_type.model]
    found["log_entry_object"] = str(log.get_edited_object().user.username)
    found["content_types"] = sorted(
        f"{ct.app_label}.{ct.model}"
        for ct in ContentType.objects.filter(
            model__in=["member", "apitoken", "invitation", "notification", "auditevent"]
        )
    )
    # The browser signed in before the upgrade, its session cookie unchanged.
    browser = Client()
    browser.cookies[settings.SESSION_COOKIE_NAME] = sys.argv[2]
    studio = browser.get("/")
    found["session_studio"] = studio.status_code
    media = browser.get(f"/media/{sys.argv[3]}")
    found["session_media"] = [
        media.status_code,
        hashlib.sha256(b"".join(media.streaming_content)).hexdigest()
        if media.status_code == 200
        else "",
    ]
    api = Client().get("/v1/models", headers={"authorization": f"Bearer {RAW_TOKEN}"})
    found["token_api"] = api.status_code
    return found


if __name__ == "__main__":
    result = build() if sys.argv[1] == "build" else check()
    print(json.dumps(result, default=str))
