"""Step 2: copy each image of the answer into the studio's storage, with a thumbnail."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from generator import fetch
from generator.imaging import InvalidImage, check_image
from generator.models import Generation, Image
from generator.services.call import failures_note
from generator.services.cancelling import generation_discard_if_cancelled
from generator.services.claims import (
    RetryLater,
    RetryPolicy,
    claim,
    default_policy,
    delete_incoming,
    fail,
    release_for_retry,
    update_held,
)

logger = logging.getLogger(__name__)

Status = Generation.Status
Step = Generation.Step


# Long on purpose: claim, copy each image, finish or release, in one readable sequence.
def generation_mirror(*, generation_id: int, policy: RetryPolicy | None = None) -> None:
    """Copy every image of the provider's answer into our storage.

    Resumable: images already stored are kept, the rest are fetched; file names come
    from the generation's UUID and the image index, so a re-run overwrites.
    """
    policy = policy or default_policy(mirror=True)
    generation = claim(generation_id, Step.MIRROR)
    if generation is None:
        return
    if generation.mirror_attempts > policy.max_attempts:
        # As in generation_call: the copies before were cut off (a worker killed while
        # decoding, say), so say so rather than leave the user with no reason.
        fail(
            generation,
            f"Could not copy the images: stopped after {policy.max_attempts} attempts "
            "that did not finish. " + (generation.error or ""),
        )
        return

    done = set(generation.images.values_list("index", flat=True))
    for entry in generation.provider_images:
        index = entry["index"]
        if index in done:
            continue
        try:
            if entry.get("stored"):
                with default_storage.open(entry["stored"], "rb") as fh:
                    data = fh.read()
            else:
                data = fetch.fetch_image(entry["url"])
            checked = check_image(data, max_pixels=settings.MIRROR_MAX_PIXELS)
        except fetch.TransientMirrorError as exc:
            reason = f"Copying image {index + 1} failed for now: {exc}"
            if generation.mirror_attempts >= policy.max_attempts:
                fail(generation, f"Could not copy image {index + 1}: {exc}")
                return
            countdown = policy.delay(generation.mirror_attempts, None)
            release_for_retry(generation, countdown, reason)
            raise RetryLater(countdown, reason) from exc
        except fetch.MirrorError as exc:
            fail(generation, f"Could not copy image {index + 1}: {exc}")
            return
        except InvalidImage as exc:
            fail(generation, f"Image {index + 1} from the provider was rejected: {exc}")
            return
        except OSError as exc:
            fail(generation, f"Image {index + 1} could not be read back: {exc}")
            return
        _store_image(generation, entry, checked)

    now = timezone.now()
    if update_held(
        generation,
        status=Status.SUCCEEDED,
        lease_until=None,
        claim_token=None,
        # A batch that came back in part says which images are missing and why.
        error=failures_note(list(generation.calls.order_by("index"))),
        finished_at=now,
    ):
        delete_incoming(generation)
        logger.info("generation %s succeeded", generation.uuid)
    elif generation_discard_if_cancelled(generation):
        # Cancelled while copying: the copies made meanwhile go with the rest.
        logger.info("generation %s: cancelled while its images were copied", generation.uuid)


def _store_image(generation: Generation, entry: dict[str, Any], checked: Any) -> Image:
    base = f"generations/{generation.uuid}/{entry['index']}"
    original = default_storage.save(f"{base}.{checked.extension}", ContentFile(checked.content))
    thumbnail = default_storage.save(f"{base}_thumb.webp", ContentFile(checked.thumbnail))
    flagged = bool(entry.get("nsfw"))
    fields = {
        "file": original,
        "thumbnail": thumbnail,
        "width": checked.width,
        "height": checked.height,
        "format": checked.format,
        "bytes": len(checked.content),
        "sha256": checked.sha256,
        "nsfw": flagged,
        # Answers saved before each image had its own call carry no seed of their own.
        "seed": entry.get("seed", generation.seed),
    }
    image, _ = Image.objects.update_or_create(
        generation=generation,
        index=entry["index"],
        defaults=fields,
        # Held for review: the team sees a flagged image only after a moderator approves.
        # Set on creation only, so a re-run never undoes a moderator's decision.
        create_defaults={
            **fields,
            "review": Image.Review.HELD if flagged else Image.Review.VISIBLE,
            "review_reason": "flagged" if flagged else "",
        },
    )
    return image
