from __future__ import annotations

from django.urls import path

from gallery import moderation_views, views

app_name = "gallery"

urlpatterns = [
    path("gallery/", views.gallery, name="index"),
    path("gallery/bulk/", views.bulk, name="bulk"),
    path("gallery/collections/", views.collections, name="collections"),
    path("gallery/collections/<uuid:uuid>/", views.collection_detail, name="collection"),
    path(
        "gallery/collections/<uuid:uuid>/rename/",
        views.collection_rename,
        name="collection_rename",
    ),
    path("gallery/collections/<uuid:uuid>/move/", views.collection_move, name="collection_move"),
    path(
        "gallery/collections/<uuid:uuid>/cover/",
        views.collection_cover,
        name="collection_cover",
    ),
    path(
        "gallery/collections/<uuid:uuid>/delete/",
        views.collection_delete,
        name="collection_delete",
    ),
    path("gallery/settings/", views.settings_page, name="settings"),
    path("images/<uuid:uuid>/", views.image_detail, name="image"),
    path("images/<uuid:uuid>/download/", views.image_download, name="download"),
    path("images/<uuid:uuid>/star/", views.image_star, name="star"),
    path("images/<uuid:uuid>/report/", moderation_views.image_report, name="report"),
    path("moderation/", moderation_views.queue, name="moderation"),
    path("moderation/decide/", moderation_views.decide, name="decide"),
]
