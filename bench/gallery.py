"""The gallery at 100,000 generations and 200,000 images, against plain Django.

Seeds the data with `manage.py gallery_seed` when the database holds fewer images
than asked, then times four gallery pages (the first, page 1,000, a filtered one and a
text search) as server time: the whole Django request in process, middleware and
template included, median of many runs, with the SQL queries each makes. The same
pages are timed from a plain ListView + Paginator over the same rows in the same run.
Prints a table, then one JSON line per figure.

Uses DATABASE_URL (the figures in docs/benchmarks.md are PostgreSQL's); without it,
SQLite in a temporary DATA_DIR, which is only good for trying the script.

    python bench/gallery.py [--runs 30] [--generations 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = 48
BASELINE_TEMPLATE = """{% for image in page_obj %}<a href="/images/{{ image.uuid }}/"><img
 src="/media/{{ image.thumbnail.name }}" width="{{ image.width }}" height="{{ image.height }}"
 alt="{{ image.generation.prompt|truncatechars:120 }}" loading="lazy"></a>
 {{ image.generation.owner.username }}{% endfor %}
{% if page_obj.has_previous %}<a href="?page={{ page_obj.previous_page_number }}">newer</a>
{% endif %}
{% if page_obj.has_next %}<a href="?page={{ page_obj.next_page_number }}">older</a>{% endif %}"""


def setup(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    if not os.environ.get("DATA_DIR"):
        os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="gallery-bench-")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # The pages render with the production static storage, which needs its manifest.
    call_command("collectstatic", interactive=False, verbosity=0)
    from generator.models import Image

    wanted = args.generations * 2
    have = Image.objects.count()
    if have < wanted:
        print(f"seeding: {have} images present, {wanted} wanted", file=sys.stderr)
        started = time.perf_counter()
        call_command("gallery_seed", generations=args.generations - have // 2)
        print(f"seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def baseline_urls() -> Any:
    """A plain ListView + Paginator gallery, as Django's docs would write it."""
    from django.db.models import Q
    from django.http import HttpResponse
    from django.template import engines
    from django.urls import path
    from django.views.generic import ListView

    from generator.selectors import images_visible_to

    template = engines["django"].from_string(BASELINE_TEMPLATE)

    class BaselineGallery(ListView):
        paginate_by = PAGE

        def get_queryset(self) -> Any:
            images = images_visible_to(self.request.user).select_related("generation__owner")
            if model := self.request.GET.get("model"):
                images = images.filter(generation__model=model)
            if self.request.GET.get("nsfw") == "hide":
                images = images.filter(nsfw=False)
            if q := self.request.GET.get("q"):
                for word in q.split():
                    images = images.filter(Q(generation__prompt__icontains=word))
            return images.order_by("-created_at", "-id")

        def render_to_response(self, context: dict, **kwargs: Any) -> HttpResponse:
            return HttpResponse(template.render(context, self.request))

    from studio import urls as studio_urls

    class URLConf:
        urlpatterns = [path("baseline/", BaselineGallery.as_view()), *studio_urls.urlpatterns]

    return URLConf


def measure(client: Any, url: str, runs: int) -> tuple[float, int, int]:
    """Median milliseconds, queries and bytes of GET `url`, after a warm-up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return statistics.median(times), len(queries.captured_queries), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--generations", type=int, default=100_000)
    args = parser.parse_args()
    setup(args)

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count
    from django.test import Client, override_settings

    from gallery import selectors
    from generator.models import Generation, Image
    from generator.selectors import images_visible_to

    viewer = get_user_model().objects.get(username="bench-00")
    # The busiest model, so the filtered page is a typical one rather than a tiny one.
    model = (
        Generation.objects.values_list("model", flat=True)
        .order_by()
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    deep_cursor = selectors.Cursor(
        *images_visible_to(viewer)
        .order_by("-created_at", "-id")
        .values_list("created_at", "id")[PAGE * 999 - 1]
    ).encode()

    client = Client()
    client.force_login(viewer)
    cases = [
        ("first page", "/gallery/", "/baseline/"),
        ("page 1,000", f"/gallery/?before={deep_cursor}", "/baseline/?page=1000"),
        ("filtered", f"/gallery/?model={model}&nsfw=hide", f"/baseline/?model={model}&nsfw=hide"),
        ("text search", "/gallery/?q=lighthouse", "/baseline/?q=lighthouse"),
    ]
    results = []
    with override_settings(ROOT_URLCONF=baseline_urls(), DEBUG=False):
        for name, url, baseline_url in cases:
            ms, queries, size = measure(client, url, args.runs)
            base_ms, base_queries, _ = measure(client, baseline_url, args.runs)
            results.append((name, ms, queries, size, base_ms, base_queries))

    vendor = connection.vendor
    images = Image.objects.count()
    print(f"\nGallery, {images:,} images on {vendor}, median of {args.runs} runs (server time)\n")
    print(f"{'page':<13}{'gallery':>10}{'queries':>9}{'baseline':>11}{'queries':>9}{'ratio':>8}")
    for name, ms, queries, _size, base_ms, base_queries in results:
        ratio = ms / base_ms
        print(f"{name:<13}{ms:>8.1f}ms{queries:>9}{base_ms:>9.1f}ms{base_queries:>9}{ratio:>8.2f}")
    first, deep = results[0][1], results[1][1]
    base_growth = results[1][4] / results[0][4]
    print(f"\npage 1,000 / page 1: {deep / first:.2f}× (baseline {base_growth:.2f}×)")
    print()
    for name, ms, queries, _size, base_ms, base_queries in results:
        slug = name.replace(",", "").replace(" ", "_")
        for figure in (
            {"name": f"gallery_{slug}_ms", "value": round(ms, 2), "unit": "ms",
             "baseline": round(base_ms, 2), "ratio": round(ms / base_ms, 3)},
            {"name": f"gallery_{slug}_queries", "value": queries, "unit": "queries",
             "baseline": base_queries, "ratio": round(queries / base_queries, 3)},
        ):  # fmt: skip
            print(json.dumps(figure))
    print(
        json.dumps(
            {
                "name": "gallery_page_1000_over_page_1",
                "value": round(deep / first, 3),
                "unit": "x",
                "baseline": round(results[1][4] / results[0][4], 3),
                "ratio": round((deep / first) / (results[1][4] / results[0][4]), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
