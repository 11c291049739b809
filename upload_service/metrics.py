"""Prometheus metrics, defined once per process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "upload_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "upload_http_request_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BYTES_RECEIVED = Counter("upload_bytes_received_total", "Upload bytes stored")
BYTES_SPLICED = Counter(
    "upload_bytes_spliced_total", "Upload bytes moved from socket to file inside the kernel"
)
UPLOADS_CREATED = Counter("upload_created_total", "Uploads created")
UPLOADS_FINISHED = Counter("upload_finished_total", "Uploads whose last byte arrived")
