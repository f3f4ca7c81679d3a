"""Every app's URLs; with the settings, the only module that imports every app."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from accounts import views as accounts_views
from generator import live_views
from generator import views as generator_views

urlpatterns = [
    # Beside Django's own "login" and "password_reset", under the same prefix.
    path("accounts/signup/", accounts_views.signup, name="signup"),
    # Without an email server there is no reset by email: the page says who can help.
    path("accounts/password_reset/", accounts_views.password_reset, name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("v1/", include("api.urls")),
    path("healthz", generator_views.healthz, name="healthz"),
    # The live event stream every signed-in page follows (static/js/live.js).
    path("live/events", live_views.live_events, name="live-events"),
    path("", include("accounts.urls")),
    path("", include("gallery.urls")),
    path("", include("generator.urls")),
]
