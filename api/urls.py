from __future__ import annotations

from django.urls import path

from api import catalog
from api import views as api

app_name = "api"

urlpatterns = [
    path("images/generations", api.images_generations, name="images-generations"),
    # The provider's own docs also show the trailing slash.
    path("images/generations/", api.images_generations),
    path("generations/<uuid:uuid>", api.generation_detail, name="generation"),
    path("models", catalog.models, name="models"),
    path("openapi.json", catalog.openapi, name="openapi"),
]
