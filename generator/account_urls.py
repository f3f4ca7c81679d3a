from __future__ import annotations

from django.urls import path

from generator import account_views

app_name = "account"

urlpatterns = [
    path("tokens/", account_views.tokens, name="tokens"),
    path("tokens/<uuid:uuid>/revoke/", account_views.token_revoke, name="token-revoke"),
]
