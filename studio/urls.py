from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from generator import views as generator_views

urlpatterns = [
    path("accounts/signup/", generator_views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("account/", include("generator.account_urls")),
    path("admin/", admin.site.urls),
    path("v1/", include("generator.api_urls")),
    path("healthz", generator_views.healthz, name="healthz"),
    path("", include("generator.team_urls")),
    path("", include("gallery.urls")),
    path("", include("generator.urls")),
]
