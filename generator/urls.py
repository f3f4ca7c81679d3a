from __future__ import annotations

from django.urls import path

from generator import views

app_name = "generator"

urlpatterns = [
    path("", views.studio, name="studio"),
    path("generations/<uuid:uuid>/", views.generation_detail, name="detail"),
    path("media/<path:name>", views.media, name="media"),
    path("models/", views.models_page, name="models"),
]
