"""Images on the configured provider's own origin are trusted like the provider;
every other host still needs the allowlist and public addresses."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generator import fetch, provider
from offline_provider import OfflineProvider


@pytest.fixture
def local_provider(settings):
    server = OfflineProvider(api_key="k").start()
    settings.AIMLAPI_BASE_URL = server.base_url
    settings.AIMLAPI_KEY = "k"
    settings.MIRROR_ALLOWED_HOSTS = ["cdn.aimlapi.com", ".fal.media"]  # the defaults
    settings.MIRROR_ALLOW_PRIVATE_ADDRESSES = False
    yield server
    server.stop()


def test_the_providers_own_images_are_mirrored_with_only_key_and_base_url(local_provider):
    result = provider.generate_images(
        {"model": "flux-realism", "prompt": "a fox", "image_size": "square"}
    )
    data = fetch.fetch_image(result.images[0].url)
    assert Image.open(io.BytesIO(data)).size == (512, 512)


def test_another_port_on_the_same_host_is_not_the_provider(local_provider):
    other = OfflineProvider().start()
    try:
        with pytest.raises(fetch.PermanentMirrorError):
            fetch.fetch_image(f"{other.origin}/files/x.png")
    finally:
        other.stop()


def test_other_private_hosts_stay_blocked(local_provider):
    for url in ("http://127.0.0.2/x.png", "http://169.254.169.254/latest/meta-data",
                "https://localhost/x.png", "http://10.0.0.5/x.png"):  # fmt: skip
        with pytest.raises(fetch.PermanentMirrorError):
            fetch.check_mirror_url(url)


def test_userinfo_on_the_provider_origin_is_refused(local_provider):
    url = local_provider.origin.replace("http://", "http://user@") + "/files/x.png"
    with pytest.raises(fetch.PermanentMirrorError):
        fetch.check_mirror_url(url)
