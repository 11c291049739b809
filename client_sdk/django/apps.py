"""The app's configuration: label `media_upload` (tables, URL names, the command's prefix)."""

from __future__ import annotations

from django.apps import AppConfig


class MediaUploadConfig(AppConfig):
    name = "client_sdk.django"
    label = "media_upload"  # "django", the module's last part, would name nothing useful
    verbose_name = "Media uploads"
    default_auto_field = "django.db.models.BigAutoField"
