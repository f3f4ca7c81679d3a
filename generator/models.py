from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models

# The text search configuration of the gallery's prompt search; the index below and
# gallery.selectors must name the same one, or PostgreSQL cannot use the index.
PROMPT_SEARCH_CONFIG = "english"


def default_visibility() -> str:
    # Read at creation time so GENERATION_DEFAULT_VISIBILITY applies without a migration.
    return settings.GENERATION_DEFAULT_VISIBILITY


def source_upload_to(instance: Generation, filename: str) -> str:
    return f"generations/{instance.uuid}/source.png"


class Generation(models.Model):
    """One request to the provider and everything it produced.

    Work moves through two steps: `call` (ask the provider, save its answer) and
    `mirror` (copy each image into our storage). A worker holds a generation only
    while `lease_until` is in the future; `claim_token` identifies that holder so a
    worker whose lease ran out cannot overwrite the one that took over.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Step(models.TextChoices):
        CALL = "call", "Calling the provider"
        MIRROR = "mirror", "Copying images"

    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private"
        SHARED = "shared", "Shared with the team"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generations"
    )
    model = models.CharField(max_length=100)
    prompt = models.TextField()
    # The exact JSON body sent to the provider, so "reuse settings" and audits see
    # what was asked, not what the form showed.
    params = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Who besides the owner (and moderators) may see it; see selectors.generations_visible_to.
    visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=default_visibility
    )
    # Image-to-image: the studio image it started from, or an uploaded (re-encoded)
    # file. The reference is sent from these at call time, never stored in `params`.
    source_image = models.ForeignKey(
        "Image",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="derived_generations",
    )
    source_file = models.FileField(upload_to=source_upload_to, blank=True, max_length=255)
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.CALL)
    error = models.TextField(blank=True)
    # The provider's HTTP status when it refused (401, 429...), so the API can answer
    # with the same status; null for failures of our own (mirroring, attempts).
    error_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # Options the studio itself honours, never sent upstream (e.g. response_format
    # for API clients asking for base64 images).
    options = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    mirror_attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    # When the sweep should re-send this generation's message if nobody took it.
    sweep_after = models.DateTimeField()

    # Seeds above 2**63 occur upstream, so the exact digits are kept as text.
    seed = models.CharField(max_length=32, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    provider_response = models.JSONField(null=True, blank=True)
    # What the mirror step copies: one entry per image (url or stored b64 payload).
    provider_images = models.JSONField(default=list, blank=True)
    provider_prompt = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    provider_finished_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # The studio page: one owner's generations, newest first.
            models.Index(fields=["owner", "-created_at", "-id"], name="generation_owner_recent"),
            # The sweep: unfinished generations by due time.
            models.Index(
                fields=["sweep_after"],
                name="generation_unfinished",
                condition=models.Q(status__in=["queued", "running"]),
            ),
            # Gallery search (gallery.selectors): full-text match on the prompt. PostgreSQL
            # only; migration 0005 skips it on SQLite, where the gallery falls back to LIKE.
            GinIndex(
                SearchVector("prompt", config=PROMPT_SEARCH_CONFIG),
                name="generation_prompt_search",
            ),
            # Gallery search by seed: a query of digits also matches the exact seed.
            models.Index(fields=["seed"], name="generation_seed"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.uuid}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def num_images(self) -> int:
        return int(self.params.get("num_images") or self.params.get("n") or 1)

    @property
    def requested_size(self) -> tuple[int, int] | None:
        from generator.registry import get_model

        spec = get_model(self.model)
        return spec.requested_size(self.params) if spec else None

    @property
    def duration(self) -> float | None:
        if self.finished_at and self.created_at:
            return (self.finished_at - self.created_at).total_seconds()
        return None

    @property
    def mirror_seconds(self) -> float | None:
        if self.finished_at and self.provider_finished_at:
            return (self.finished_at - self.provider_finished_at).total_seconds()
        return None


def image_upload_to(instance: Image, filename: str) -> str:
    # Never used for naming (services choose the name), but FileField requires it.
    return f"generations/{instance.generation.uuid}/{filename}"


class Image(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()
    file = models.FileField(upload_to=image_upload_to, max_length=255)
    thumbnail = models.FileField(upload_to=image_upload_to, max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8)
    bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    nsfw = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("generation", "index")
        constraints = [
            models.UniqueConstraint(fields=["generation", "index"], name="image_unique_index"),
        ]
        indexes = [
            # The gallery's keyset pagination (gallery.selectors): newest first, walked
            # from a (created_at, id) cursor so page 1,000 costs what page 1 costs.
            models.Index(fields=["-created_at", "-id"], name="image_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.generation.uuid} #{self.index}"

    @property
    def content_type(self) -> str:
        return {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[self.format]


class ApiToken(models.Model):
    """A personal token for the studio's API; only the sha256 of the token is stored.

    Created and checked in generator.tokens; the gateway relies on `token_hash`
    being unique to find the user behind an `Authorization: Bearer` header.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The token's first characters, so a user can tell tokens apart in the list.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # The tokens page and the per-user cap: one user's tokens, newest first.
            models.Index(fields=["user", "-created_at", "-id"], name="apitoken_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class CostEntry(models.Model):
    """What one generation cost: the studio's estimate and the provider's own figure.

    Written once when the provider answers (services._save_provider_result); the
    budget and spending pages sum it per user and per model.
    """

    generation = models.OneToOneField(Generation, on_delete=models.CASCADE, related_name="cost")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cost_entries"
    )
    model = models.CharField(max_length=100)
    images = models.PositiveSmallIntegerField()
    # Registry list price × images; the provider's credits are kept beside it when given.
    estimated_usd = models.DecimalField(max_digits=10, decimal_places=4)
    credits_used = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # Spending per user over a period.
            models.Index(fields=["owner", "-created_at"], name="costentry_owner_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.model} ${self.estimated_usd}"


class ModelSetting(models.Model):
    """An admin's choice to enable or disable one registry model.

    Without a row a model follows its registry default: enabled, unless the provider
    marked it deprecated (DALL·E 2 and 3).
    """

    model = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.model}: {'enabled' if self.enabled else 'disabled'}"
