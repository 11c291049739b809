"""A Django app for the backend: upload tokens, verified webhooks, Django signals.

    # settings.py
    INSTALLED_APPS += ["client_sdk.django"]
    MEDIA_UPLOAD = {"SERVER_URL": ..., "TOKEN_SECRET": ..., "API_KEY": ..., "WEBHOOK_SECRET": ...}

    # urls.py
    path("media-upload/", include("client_sdk.django.urls")),

    # anywhere: react to the service's events
    from client_sdk.django.signals import media_ready

    @receiver(media_ready)
    def publish(sender, upload, event, **kwargs): ...

`POST media-upload/token/` gives the logged-in user an upload token, `POST
media-upload/webhooks/` takes the service's signed events, and `manage.py
media_upload_reconcile` catches up on events whose webhooks never arrived. See
docs/django.md.
"""
