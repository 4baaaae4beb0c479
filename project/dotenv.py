"""The local `.env` file, read into the environment: by the settings, and by the servers before
they read their own variables (BIND, WEB_CONCURRENCY, METRICS_DIR...), which they do before any
Django setting is loaded. The real environment always wins."""

from __future__ import annotations

from pathlib import Path

import environ

DOTENV = Path(__file__).resolve().parent.parent / ".env"


def read_dotenv() -> None:
    environ.Env.read_env(DOTENV, overwrite=False)
