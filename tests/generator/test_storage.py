"""Media on S3 (MEDIA_STORAGE=s3), against moto's in-process S3: images are stored
and read back through default_storage, and the media view answers a permitted
viewer with a short-lived signed URL instead of the bytes."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from moto import mock_aws
from PIL import Image as PILImage

from generator.imaging import check_image
from generator.models import Generation, Image
from offline_provider import render_image

BUCKET = "studio-media"


@pytest.fixture
def s3(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings.MEDIA_STORAGE = "s3"
        settings.S3_PUBLIC_ENDPOINT_URL = ""
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "region_name": "us-east-1",
                    "signature_version": "s3v4",
                    "querystring_auth": True,
                    "querystring_expire": 300,
                    "file_overwrite": True,
                },
            },
        }
        yield client


def stored_image(owner: Any) -> Image:
    checked = check_image(
        render_image("flux-realism", "a lighthouse", "d", 7, 96, 64, "jpeg"), max_pixels=10**6
    )
    generation = Generation.objects.create(
        owner=owner,
        model="flux-realism",
        prompt="a lighthouse",
        params={"model": "flux-realism", "prompt": "a lighthouse"},
        status=Generation.Status.SUCCEEDED,
        visibility="shared",
        sweep_after=timezone.now(),
    )
    base = f"generations/{generation.uuid}/0"
    original = default_storage.save(f"{base}.jpg", ContentFile(checked.content))
    thumbnail = default_storage.save(f"{base}_thumb.webp", ContentFile(checked.thumbnail))
    return Image.objects.create(
        generation=generation,
        index=0,
        file=original,
        thumbnail=thumbnail,
        width=checked.width,
        height=checked.height,
        format=checked.format,
        bytes=len(checked.content),
        sha256=checked.sha256,
    )


@pytest.mark.django_db
def test_an_image_is_stored_in_the_bucket_and_read_back(s3, owner):
    image = stored_image(owner)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {image.file.name, image.thumbnail.name} <= keys
    with default_storage.open(image.file.name, "rb") as fh:
        data = fh.read()
    assert len(data) == image.bytes
    assert PILImage.open(io.BytesIO(data)).size == (96, 64)
    # A retry writes the same name again instead of a renamed copy.
    assert default_storage.save(image.file.name, ContentFile(data)) == image.file.name


@pytest.mark.django_db
def test_media_on_s3_redirects_to_a_signed_url_that_expires(s3, owner, client):
    image = stored_image(owner)
    client.force_login(owner)
    response = client.get(reverse("generator:media", args=[image.thumbnail.name]))
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    url = urlsplit(response["Location"])
    query = parse_qs(url.query)
    assert url.path.endswith(image.thumbnail.name)
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Signature"]
    assert query["response-content-type"] == ["image/webp"]
    # The signed URL is good: S3 (moto) serves the object it names.
    fetched = s3.get_object(Bucket=BUCKET, Key=image.thumbnail.name)["Body"].read()
    assert PILImage.open(io.BytesIO(fetched)).format == "WEBP"


@pytest.mark.django_db
def test_media_on_s3_checks_permission_before_signing(s3, owner, outsider, client):
    image = stored_image(owner)
    Generation.objects.filter(pk=image.generation_id).update(visibility="private")
    client.force_login(outsider)
    response = client.get(reverse("generator:media", args=[image.file.name]))
    assert response.status_code == 404
    client.logout()
    response = client.get(reverse("generator:media", args=[image.file.name]))
    assert response.status_code == 302 and "X-Amz-Signature" not in response["Location"]


def test_media_stays_on_the_filesystem_by_default(tmp_path):
    from tests.studio.test_settings import load_production_settings

    values = load_production_settings({"DATA_DIR": str(tmp_path)})
    assert values["MEDIA_STORAGE"] == "filesystem"
    assert "FileSystemStorage" in str(values["STORAGES"])
    values = load_production_settings(
        {"DATA_DIR": str(tmp_path), "MEDIA_STORAGE": "s3", "S3_BUCKET": "b",
         "S3_ENDPOINT_URL": "http://minio:9000", "S3_PUBLIC_ENDPOINT_URL": "http://localhost:9000"}
    )  # fmt: skip
    assert "storages.backends.s3.S3Storage" in str(values["STORAGES"])
    assert "http://localhost:9000" in str(values["SECURE_CSP"])
