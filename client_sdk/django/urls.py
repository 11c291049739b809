"""`path("media-upload/", include("client_sdk.django.urls"))` gives token/ and webhooks/."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "media_upload"
urlpatterns = [
    path("token/", views.token, name="token"),
    path("webhooks/", views.webhooks, name="webhooks"),
]
