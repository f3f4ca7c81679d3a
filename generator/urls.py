from __future__ import annotations

from django.urls import path

from generator import manage_views, views

app_name = "generator"

urlpatterns = [
    path("", views.studio, name="studio"),
    path("studio/defaults", views.studio_defaults, name="defaults"),
    path("studio/form", views.studio_form, name="form"),
    path("studio/parameters", views.parameters_read, name="parameters"),
    path("generations/<uuid:uuid>/", views.generation_detail, name="detail"),
    path("generations/<uuid:uuid>/retry", views.generation_retry, name="retry"),
    path("generations/<uuid:uuid>/cancel", views.generation_cancel, name="cancel"),
    path("generations/<uuid:uuid>/regenerate", views.generation_regenerate, name="regenerate"),
    path("generations/<uuid:uuid>/variations", views.generation_variations, name="variations"),
    path("generations/<uuid:uuid>/visibility", views.generation_visibility, name="visibility"),
    path("media/<path:name>", views.media, name="media"),
    path("models/", manage_views.models_page, name="models"),
    path("models/<path:model_id>/enabled", manage_views.model_enable, name="model-enable"),
    path("reference/<str:token>/", views.reference, name="reference"),
    path("usage/", manage_views.usage, name="usage"),
    path("policy/", manage_views.policy, name="policy"),
]
