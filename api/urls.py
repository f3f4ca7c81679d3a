from __future__ import annotations

from django.urls import path, re_path

from api import catalog, edits
from api import views as api

app_name = "api"

urlpatterns = [
    path("images/generations", api.images_generations, name="images-generations"),
    # The provider's own docs also show the trailing slash.
    path("images/generations/", api.images_generations),
    path("images/edits", edits.images_edits, name="images-edits"),
    path("images/edits/", edits.images_edits),
    # Any id, so a malformed one is the API's JSON 404 and not the site's HTML one.
    path("generations/<str:ident>", api.generation_detail, name="generation"),
    path("generations/<str:ident>/cancel", api.generation_cancel, name="generation-cancel"),
    path("models", catalog.models, name="models"),
    path("openapi.json", catalog.openapi, name="openapi"),
    # Last: every other /v1 path answers the flat 404 (and no slash-appending redirect).
    re_path(r"^(?P<unknown>.*)$", api.not_found),
]
