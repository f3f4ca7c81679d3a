"""Seed a large gallery for the benchmark (bench/gallery.py): users, generations and
images spread over a year, with prompts drawn from a small vocabulary so search has
realistic hit rates. Every image row points at one of a few small shared files.

On PostgreSQL the rows go in with COPY (100,000 generations and 200,000 images in
well under a minute); elsewhere with bulk_create in large batches.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone

from generator.imaging import check_image
from generator.models import Generation, Image
from generator.registry import IMAGE_SIZE_PRESETS, MODELS
from offline_provider import render_image

USER_PREFIX = "bench-"
ADJECTIVES = (
    "ancient quiet golden misty neon rusty frozen tiny giant crystal wooden velvet "
    "stormy sunlit forgotten floating paper marble glowing abandoned"
).split()
SUBJECTS = (
    "lighthouse fox whale castle robot bicycle teapot dragon garden library violin "
    "mountain owl tram market koi astronaut cathedral orchard harbour"
).split()
PLACES = (
    "at dusk|in the rain|on a hill|under the sea|in a snow globe|at the night market|"
    "in a desert|on the moon|in a greenhouse|by a river"
).split("|")
STYLES = (
    "oil painting|35mm photograph|watercolour|isometric render|ink sketch|"
    "studio lighting|cinematic|pastel illustration"
).split("|")


def prompt_for(rng: random.Random) -> str:
    return (
        f"A {rng.choice(ADJECTIVES)} {rng.choice(SUBJECTS)} {rng.choice(PLACES)}, "
        f"{rng.choice(STYLES)}, {rng.choice(ADJECTIVES)} details"
    )


class Command(BaseCommand):
    help = "Seed generations and images for the gallery benchmark."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--generations", type=int, default=100_000)
        parser.add_argument("--images-per-generation", type=int, default=2)
        parser.add_argument("--users", type=int, default=20)
        parser.add_argument("--days", type=int, default=365)
        parser.add_argument("--seed", type=int, default=5)

    # Long on purpose: one linear seeding script, bulk inserts in the order the keys need.
    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])
        users = self.users(options["users"])
        files = self.shared_files()
        models_ids = list(MODELS)
        presets = list(IMAGE_SIZE_PRESETS.items())
        count = options["generations"]
        per = options["images_per_generation"]
        now = timezone.now()
        span = dt.timedelta(days=options["days"])
        generations: list[Generation] = []
        images: list[Image] = []
        next_generation = (Generation.objects.aggregate(m=models.Max("pk"))["m"] or 0) + 1
        next_image = (Image.objects.aggregate(m=models.Max("pk"))["m"] or 0) + 1
        for i in range(count):
            # Oldest first, a few minutes apart on average, with jitter.
            created = now - span + span * (i + rng.random() * 0.5) / count
            preset, (width, height) = rng.choice(presets)
            model = rng.choice(models_ids)
            prompt = prompt_for(rng)
            seed = str(rng.randrange(1, 2**32))
            params = {
                "model": model,
                "prompt": prompt,
                "image_size": preset,
                "num_images": per,
                "num_inference_steps": 28,
                "guidance_scale": 3.5,
                "seed": int(seed),
            }
            generation = Generation(
                pk=next_generation + i,
                owner_id=rng.choice(users),
                model=model,
                prompt=prompt,
                params=params,
                status=Generation.Status.SUCCEEDED,
                visibility="private" if rng.random() < 0.1 else "shared",
                seed=seed,
                timings={"inference": round(rng.uniform(1, 9), 3)},
                sweep_after=created,
                created_at=created,
                finished_at=created + dt.timedelta(seconds=5),
            )
            generations.append(generation)
            for index in range(per):
                name, thumb, checked = files[(i + index) % len(files)]
                images.append(
                    Image(
                        pk=next_image + len(images),
                        generation_id=generation.pk,
                        index=index,
                        file=name,
                        thumbnail=thumb,
                        width=width,
                        height=height,
                        format=checked.format,
                        bytes=len(checked.content),
                        sha256=checked.sha256,
                        nsfw=rng.random() < 0.02,
                        created_at=created + dt.timedelta(seconds=5, microseconds=index),
                    )
                )
        with transaction.atomic():
            self.insert(Generation, generations)
            self.insert(Image, images)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for model in (Generation, Image):
                    table = model._meta.db_table
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT MAX(id) FROM {table}))"
                    )
                    cursor.execute(f"ANALYZE {table}")
        self.stdout.write(f"seeded {len(generations)} generations and {len(images)} images")

    def users(self, count: int) -> list[int]:
        User = get_user_model()
        wanted = [f"{USER_PREFIX}{n:02d}" for n in range(count)]
        existing = set(User.objects.filter(username__in=wanted).values_list("username", flat=True))
        User.objects.bulk_create(
            [User(username=name, password="!") for name in wanted if name not in existing]
        )
        return list(User.objects.filter(username__in=wanted).values_list("pk", flat=True))

    def shared_files(self) -> list[tuple[str, str, Any]]:
        """Four small real images that every seeded row shares."""
        files = []
        for n in range(4):
            data = render_image("bench", f"shared image {n}", "bench", n, 384, 288, "png")
            checked = check_image(data, max_pixels=10**7)
            base = f"generations/{uuid.UUID(int=n + 1)}/0"
            name = default_storage.save(f"{base}.png", ContentFile(checked.content))
            thumb = default_storage.save(f"{base}_thumb.webp", ContentFile(checked.thumbnail))
            files.append((name, thumb, checked))
        return files

    def insert(self, model: type[models.Model], objects: list[models.Model]) -> None:
        if connection.vendor != "postgresql":
            # auto_now_add would overwrite the spread-out creation times.
            stamped = [f for f in model._meta.concrete_fields if getattr(f, "auto_now_add", False)]
            for field in stamped:
                field.auto_now_add = False
            try:
                model.objects.bulk_create(objects, batch_size=5000)
            finally:
                for field in stamped:
                    field.auto_now_add = True
            return
        fields = [f for f in model._meta.concrete_fields]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
                for obj in objects:
                    copy.write_row([self.column_value(obj, f) for f in fields])

    @staticmethod
    def column_value(obj: models.Model, field: models.Field) -> Any:
        value = getattr(obj, field.attname)
        if value is None and field.has_default():
            value = field.get_default()
        if isinstance(field, models.JSONField):
            return None if value is None else json.dumps(value)
        if isinstance(field, models.FileField):
            return str(value or "")
        return value
