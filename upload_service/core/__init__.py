"""The product's own concepts, with no HTTP in them: uploads and their stores, the
status record, locks, jobs, events, tokens, media URLs, settings.

Imported by the HTTP service (`upload_service.http`) and by the workers
(`processors`); imports neither.
"""
