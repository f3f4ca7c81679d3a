from __future__ import annotations

from django.urls import path

from generator import team_views

app_name = "team"

urlpatterns = [
    path("members/", team_views.member_list, name="members"),
    path("members/<str:username>/", team_views.member_action, name="member-action"),
    path("invitations/", team_views.invitation_create, name="invite"),
    path("audit/", team_views.audit_log, name="audit"),
    path("audit/export.csv", team_views.audit_export, name="audit-export"),
    path("usage/", team_views.usage, name="usage"),
    path("notifications/", team_views.notifications, name="notifications"),
    path("account/settings/", team_views.account, name="account"),
    path("policy/", team_views.policy, name="policy"),
]
