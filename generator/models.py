from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

from accounts.models import Visibility

# The text search configuration of the gallery's prompt search. The GIN index of
# migration 0005 (PostgreSQL only) and gallery.selectors must name the same one, or
# PostgreSQL cannot use the index.
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
        # Stopped by its owner or an admin (services.generation_cancel). Final, like the
        # two above: no worker claims it and the sweep never re-sends it.
        CANCELLED = "cancelled", "Cancelled"

    class Step(models.TextChoices):
        CALL = "call", "Calling the provider"
        MIRROR = "mirror", "Copying images"

    Visibility = Visibility

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
    # The price estimate at submission (registry price × images), counted against the
    # budgets until the provider's answer writes the CostEntry.
    estimated_usd = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    # Broker priority (0 first): a user's first few generations in flight go ahead of
    # the rest of their batch, so one big batch cannot hold up everyone else.
    priority = models.PositiveSmallIntegerField(default=0)
    # Options the studio itself honours, never sent upstream (e.g. response_format
    # for API clients asking for base64 images), and what an API client sent that is
    # recorded rather than sent: OpenAI's `user`, and the `ignored_params` it had no
    # use for.
    options = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    mirror_attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    # The provider's current stretch of 429s: when it began and how many so far. Rate
    # limits do not count as attempts; the stretch is bounded in time instead.
    rate_limited_since = models.DateTimeField(null=True, blank=True)
    rate_limits = models.PositiveIntegerField(default=0)
    # When the sweep should re-send this generation's message if nobody took it.
    sweep_after = models.DateTimeField()

    # Seeds above 2**63 occur upstream, so the exact digits are kept as text.
    seed = models.CharField(max_length=32, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    provider_response = models.JSONField(null=True, blank=True)
    # What the mirror step copies: one entry per image (url or stored b64 payload).
    provider_images = models.JSONField(default=list, blank=True)
    provider_prompt = models.TextField(blank=True)

    # What made an API generation, so a repeated request reattaches to it instead of
    # paying for another: the token, the client's Idempotency-Key (unique per token) and
    # the sha256 of the exact request body (an SDK's retry sends the same bytes).
    api_token = models.ForeignKey(
        "accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=255, blank=True)
    request_sha256 = models.CharField(max_length=64, blank=True)

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
            # Gallery search also uses generation_prompt_search, a GIN index on the prompt's
            # tsvector that migration 0005 creates on PostgreSQL only. It is kept out of
            # this list: SQLite rebuilds tables from the listed indexes, and has no
            # to_tsvector.
            # Gallery search by seed: a query of digits also matches the exact seed.
            models.Index(fields=["seed"], name="generation_seed"),
            # api.services.generation_replay: a token's recent requests by body digest.
            models.Index(
                fields=["api_token", "request_sha256", "-created_at"],
                name="generation_api_request",
                condition=~models.Q(request_sha256=""),
            ),
        ]
        constraints = [
            # One generation per token and Idempotency-Key, however many requests race.
            models.UniqueConstraint(
                fields=["api_token", "idempotency_key"],
                name="generation_idempotency_key",
                condition=~models.Q(idempotency_key=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.uuid}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED)

    @property
    def is_cancellable(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

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
    # The seed this image was drawn with: each image of a batch comes from its own call
    # with seed S+index, so one image can be reproduced alone. Text, as Generation.seed.
    seed = models.CharField(max_length=32, blank=True)

    class Review(models.TextChoices):
        # Seen by everyone the generation is shared with.
        VISIBLE = "visible", "Visible"
        # Flagged by the provider or reported: only its owner and moderators see it
        # until a moderator decides (gallery.services.moderation_decide).
        HELD = "held", "Held for review"
        HIDDEN = "hidden", "Hidden by a moderator"

    review = models.CharField(max_length=8, choices=Review.choices, default=Review.VISIBLE)
    # Why it is held ("flagged", "reported") or, when hidden, the reason shown to the owner.
    review_reason = models.CharField(max_length=500, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
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


def usd_text(amount: Decimal) -> str:
    """An amount as the provider writes it in x-aimlapi-usd-spent: plain digits, no
    trailing zeros ("0.0421")."""
    text = f"{amount:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


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
    # What the provider charged (its x-aimlapi-usd-spent header, summed over the calls);
    # null when it did not say for every paid call. Budgets count it before the estimate.
    provider_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # Spending per user over a period.
            models.Index(fields=["owner", "-created_at"], name="costentry_owner_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.model} ${self.usd}"

    @property
    def usd(self) -> Decimal:
        """What the generation cost: the provider's figure when it gave one."""
        return self.provider_usd if self.provider_usd is not None else self.estimated_usd

    @property
    def provider_usd_text(self) -> str:
        """The provider's figure as it wrote it: no trailing zeros ("0.0421")."""
        return "" if self.provider_usd is None else usd_text(self.provider_usd)

    @property
    def source(self) -> str:
        return "provider" if self.provider_usd is not None else "estimate"


class ProviderCall(models.Model):
    """One request to the provider on behalf of a generation: its attempt record.

    A generation of N images of a model that takes a seed is N calls with seeds S..S+N-1
    (index 0..N-1), so each image can be reproduced alone; other models make one call
    for all their images. generator.services.call owns every write: a call is tried
    until it answers, fails for good or reaches the attempt cap, on its own, while
    the generation's claim and lease cover all of its calls at once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="calls")
    # The index of the first image this call yields (its only one when split per image).
    index = models.PositiveSmallIntegerField()
    # Sent as X-Client-Request-Id: the generation's UUID, with "-<index>" when it makes
    # several calls; the provider keeps it in its usage logs.
    request_id = models.CharField(max_length=64)
    # The seed sent, replaced by the provider's when its answer names one.
    seed = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    error_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # Paid answers (a second one comes when a worker paused past its lease answered
    # after another), the images they brought and what the provider said they cost.
    answers = models.PositiveSmallIntegerField(default=0)
    paid_images = models.PositiveSmallIntegerField(default=0)
    usd_spent = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    credits_used = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    # What the mirror step will copy from this call: entries as Generation.provider_images.
    images = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    response = models.JSONField(null=True, blank=True)
    provider_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("generation", "index")
        constraints = [
            models.UniqueConstraint(fields=["generation", "index"], name="providercall_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} ({self.status})"


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


class BlockedTerm(models.Model):
    """The prompt policy: a word or regular expression a prompt may not contain."""

    pattern = models.CharField(max_length=200, unique=True)
    is_regex = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.pattern


class LiveEvent(models.Model):
    """One change live pages are told about, kept for SSE_EVENT_RETENTION seconds so a
    browser that reconnects replays what it missed (generator.events). Only written
    when the broker is not Redis; with Redis the events are a Redis stream instead."""

    kind = models.CharField(max_length=40)
    # Who may receive it: "user:<pk>" or "moderators" (generator.live_views filters).
    audience = models.CharField(max_length=80)
    data = models.JSONField(default=dict)
    # Read by the retention trim in generator.events.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"
