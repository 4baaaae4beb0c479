"""Production settings pass Django's deployment checklist with the documented environment, and
their HTTPS redirect spares the health checks a load balancer makes over plain HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import requests
from django.conf import settings
from django.core.management.utils import get_random_secret_key

from accounts.services import api_key_create
from tests.inference.helpers import IRIS_ROW

HOST = "api.example.com"


def documented_environment() -> dict[str, str]:
    """README's "Running it in production" and .env.example, nothing else of this machine's."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "project.settings.prod",
        "DJANGO_SECRET_KEY": get_random_secret_key(),  # 50 random characters
        "DATABASE_URL": "postgres://mlserve:change-me@127.0.0.1:5432/mlserve",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DJANGO_ALLOWED_HOSTS": HOST,
        "BEHIND_TLS_PROXY": "true",
    }


def deploy_check(environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check_with_no_warnings():
    result = deploy_check(documented_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_a_secret_key_starting_with_a_dollar_is_taken_as_it_is():
    """Django's generated keys may start with "$", which django-environ reads as "the value of the
    variable named by the rest": production refused such a key as missing."""
    result = deploy_check({**documented_environment(), "DJANGO_SECRET_KEY": "$" + get_random_secret_key()})
    assert result.returncode == 0, result.stdout + result.stderr


def test_turning_the_https_redirect_off_is_a_warning_again():
    """The check above could fail: the settings it passes on are the ones it reads."""
    result = deploy_check({**documented_environment(), "SECURE_SSL_REDIRECT": "false", "SECURE_HSTS_SECONDS": "0"})
    assert result.returncode == 1
    assert "security.W004" in result.stderr + result.stdout
    assert "security.W008" in result.stderr + result.stdout


def test_plain_http_health_checks_are_not_redirected_but_the_api_is(gunicorn_server, alice):
    """The production server under production settings, asked over plain HTTP as a load balancer
    or a scraper asks (no X-Forwarded-Proto), and then as the TLS proxy forwards a client's request."""
    key = api_key_create(user=alice, name="tls", created_by=None).key
    environment = documented_environment()
    base_url = gunicorn_server(
        workers=1,
        production_config=True,
        DJANGO_SETTINGS_MODULE="project.settings.prod",
        DJANGO_SECRET_KEY=environment["DJANGO_SECRET_KEY"],
        # 127.0.0.1 too: the fixture's own readiness probe asks with that host.
        DJANGO_ALLOWED_HOSTS=f"{HOST},127.0.0.1",
        BEHIND_TLS_PROXY="true",
        METRICS_TOKEN="scrape-token",
    )
    plain = {"Host": HOST}
    scraper = {**plain, "Authorization": "Bearer scrape-token"}
    for path, headers in (("/healthz", plain), ("/readyz", plain), ("/metrics", scraper)):
        response = requests.get(f"{base_url}{path}", headers=headers, allow_redirects=False, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.headers)
        assert "Strict-Transport-Security" not in response.headers  # meaningless over plain HTTP

    response = requests.post(
        f"{base_url}/api/v1/predictions/",
        json={"features": IRIS_ROW},
        headers={**plain, "X-API-Key": key},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{HOST}/api/v1/predictions/"

    response = requests.post(
        f"{base_url}/api/v1/predictions/",
        json={"features": IRIS_ROW},
        headers={**plain, "X-API-Key": key, "X-Forwarded-Proto": "https"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
