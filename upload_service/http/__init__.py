"""The HTTP service: the Starlette app, tus 1.0 and the IETF draft over one store,
the status API, downloads, published media, the upload page, health and metrics."""
