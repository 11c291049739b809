"""`manage.py media_upload_reconcile [ID ...]`: poll the service for uploads not yet final.

Run it from cron (every few minutes to hourly): whatever webhooks were missed, each
upload's events are signalled once, as if they had arrived. It also forgets
handled webhook ids older than --keep-days (the service stops retrying long before).
Exit status 0; a line per signalled event on stdout.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from client_sdk._status import StatusClient
from client_sdk.django import conf
from client_sdk.django.reconcile import forget_deliveries, reconcile


class Command(BaseCommand):
    help = "Poll the upload service for uploads whose webhooks were missed, and signal them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", help="upload ids to check besides tracked ones")
        parser.add_argument(
            "--keep-days",
            type=int,
            default=30,
            help="forget handled webhook ids older than this (default 30)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with StatusClient(conf.server_url(), conf.required("API_KEY")) as client:
            report = reconcile(client, options["ids"])
        for upload_id, event_type in report.signalled:
            self.stdout.write(f"{upload_id}: {event_type}")
        for upload_id in report.missing:
            self.stderr.write(f"{upload_id}: unknown to the service")
        forgotten = forget_deliveries(timedelta(days=options["keep_days"]))
        self.stdout.write(
            f"checked {report.checked} upload(s), signalled {len(report.signalled)} event(s), "
            f"forgot {forgotten} old webhook id(s)"
        )
