from __future__ import annotations

from django.urls import path

from accounts import token_views, views

app_name = "accounts"

urlpatterns = [
    path("members/", views.member_list, name="members"),
    path("members/<str:username>/", views.member_action, name="member-action"),
    path("invitations/", views.invitation_create, name="invite"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/export.csv", views.audit_export, name="audit-export"),
    path("notifications/", views.notifications, name="notifications"),
    path("account/settings/", views.account, name="account"),
    path("account/tokens/", token_views.tokens, name="tokens"),
    path("account/tokens/<uuid:uuid>/revoke/", token_views.token_revoke, name="token-revoke"),
]
