"""The container files (Dockerfile, compose.yaml), tested for what can be without building an
image: that they say what the Procfile says, give every Django service what production settings
require, check the health of everything that keeps running, and that their commands exist and
their health checks work against the real thing.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.core.management.utils import get_random_secret_key

ROOT = Path(settings.BASE_DIR)
# What an operator's .env holds (compose.yaml requires these two).
DOT_ENV = {"DJANGO_SECRET_KEY": get_random_secret_key(), "POSTGRES_PASSWORD": "change-me"}

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<named>\w+))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string in the file: $$, ${X}, ${X:-default}, ${X:?error}."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op = match["braced"] or match["named"], match["op"] or ""
        found = env.get(name)
        unset = found is None or (found == "" and op.startswith(":"))
        if unset and op.endswith("?"):
            raise ValueError(f"{name}: {match['arg']}")
        if unset and op.endswith("-"):
            return match["arg"]
        return found or ""

    return _VARIABLE.sub(replace, value)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load((ROOT / "compose.yaml").read_text()), DOT_ENV if env is None else env)


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {role.strip(): shlex.split(command) for role, _, command in (line.partition(":") for line in lines if line)}


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined and comments left out."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + (" " if line.rstrip().endswith("\\") else "")
        if not line.rstrip().endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_cmd() -> list[str]:
    return json.loads(next(arguments for keyword, arguments in final_stage() if keyword == "CMD"))


def dockerfile_healthcheck() -> list[str]:
    arguments = next(arguments for keyword, arguments in final_stage() if keyword == "HEALTHCHECK")
    return json.loads(arguments.partition(" CMD ")[2])


def django_services(services: dict[str, Any]) -> dict[str, Any]:
    """The services that run this project's image."""
    return {name: service for name, service in services.items() if service.get("build") == "."}


def command_of(service: dict[str, Any]) -> list[str]:
    return service.get("command") or dockerfile_cmd()


def production_requirements() -> set[str]:
    """The variables project/settings/prod.py refuses to start without: those its
    ImproperlyConfigured messages name."""
    source = (ROOT / "project" / "settings" / "prod.py").read_text()
    messages = re.findall(r'raise ImproperlyConfigured\(\s*"([^"]*)"', source)
    return {name for message in messages for name in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", message)}


def test_compose_refuses_to_start_without_its_secrets():
    with pytest.raises(ValueError, match="DJANGO_SECRET_KEY"):
        compose({"POSTGRES_PASSWORD": "change-me"})
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        compose({"DJANGO_SECRET_KEY": DOT_ENV["DJANGO_SECRET_KEY"]})
    assert compose()["services"]["web"]["environment"]["DJANGO_SECRET_KEY"] == DOT_ENV["DJANGO_SECRET_KEY"]


def test_every_django_service_has_what_production_settings_require():
    required = production_requirements()
    assert required == {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    services = django_services(compose()["services"])
    assert set(services) == {"migrate", "web", "aggregator", "housekeeping"}
    for name, service in services.items():
        environment = service["environment"]
        assert environment["DJANGO_SETTINGS_MODULE"] == "project.settings.prod", name
        for variable in required | {"DJANGO_ALLOWED_HOSTS", "TRUSTED_PROXIES", "BEHIND_TLS_PROXY", "MODEL_DIR"}:
            assert environment.get(variable), (name, variable)
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert "/var/lib/mlserve/models" in {volume.split(":")[1] for volume in service["volumes"]}
        assert environment["MODEL_DIR"] == "/var/lib/mlserve/models"


def test_the_compose_environment_passes_the_deploy_check():
    """Each Django service's environment, as compose gives it, loads the production settings and
    passes `check --deploy` (no connection is made: the hosts need not exist here)."""
    services = django_services(compose()["services"]).values()
    # migrate, aggregator and housekeeping share one environment: each distinct one is checked once.
    for environment in map(json.loads, {json.dumps(s["environment"], sort_keys=True) for s in services}):
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", **{key: str(value) for key, value in environment.items()}},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_is_the_procfiles():
    roles = procfile()
    services = compose()["services"]
    assert dockerfile_cmd() == roles["web"] == ["python", "-m", "project.serve"]
    for role, command in roles.items():
        assert command_of(services[role]) == command, role


def test_every_management_command_named_exists():
    known = get_commands()
    services = django_services(compose()["services"])
    named = {command_of(s)[2] for s in services.values() if command_of(s)[:2] == ["python", "manage.py"]}
    assert named == {"migrate", "aggregate_usage", "purge_idempotency_keys"}
    # And those the files tell an operator to run (registering models, collecting static files).
    for path in ("compose.yaml", "Dockerfile", "Procfile"):
        named |= set(re.findall(r"manage\.py (\w+)", (ROOT / path).read_text()))
    assert {"train_demo_models", "register_model", "collectstatic"} <= named
    assert named - set(known) == set()


def test_every_long_running_service_checks_its_health():
    services = compose()["services"]
    image_healthcheck = any(keyword == "HEALTHCHECK" for keyword, _ in final_stage())
    for name, service in services.items():
        if service.get("restart") == "no":  # one-shot
            continue
        healthcheck = service.get("healthcheck")
        if healthcheck is None:
            # Only the web server may rely on the image's check: it asks the web server.
            assert service.get("build") == "." and command_of(service) == procfile()["web"], name
            assert image_healthcheck
        else:
            assert not healthcheck.get("disable") and healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck") or dependency == "web", (name, dependency)


def test_web_scales_behind_nginx():
    services = compose()["services"]
    web, nginx = services["web"], services["nginx"]
    # --scale web=3: no fixed name, no host port for the replicas to fight over.
    assert "container_name" not in web and "ports" not in web
    assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert ("EXPOSE", "8000") in final_stage()

    assert nginx["image"].startswith("nginx:")
    assert nginx["ports"] == ["8080:80"]
    assert nginx["depends_on"]["web"] == {"condition": "service_healthy"}
    mounts = {source: target for source, target, *_ in (volume.split(":") for volume in nginx["volumes"])}
    assert mounts["./deploy/nginx.conf"] == "/etc/nginx/templates/default.conf.template"
    # Every variable of the template is set, and the image's envsubst touches those alone, never
    # one of nginx's own variables.
    template = (ROOT / "deploy" / "nginx.conf").read_text()
    variables = set(re.findall(r"\$\{(\w+)\}", template))
    assert variables == {"MLSERVE_UPSTREAM", "NGINX_PORT"}
    environment = nginx["environment"]
    assert environment["MLSERVE_UPSTREAM"] == "web:8000" and environment["NGINX_PORT"] == "80"
    envsubst_filter = re.compile(environment["NGINX_ENVSUBST_FILTER"])
    assert all(envsubst_filter.search(variable) for variable in variables)
    nginx_variables = set(re.findall(r"\$([a-z_]+)", template))
    assert {"remote_addr", "request_id", "http_x_request_id"} <= nginx_variables
    assert not any(envsubst_filter.search(name.upper()) for name in nginx_variables)
    # The app trusts X-Forwarded-For from nginx's fixed address alone (not the subnet, whose
    # gateway is where connections through Docker's port proxy come from), inside the network.
    address = nginx["networks"]["default"]["ipv4_address"]
    subnet = compose()["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert web["environment"]["TRUSTED_PROXIES"] == address
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    assert address != str(next(ipaddress.ip_network(subnet).hosts()))  # the gateway


def test_the_dockerfile_builds_in_two_stages_and_runs_unprivileged():
    instructions = dockerfile()
    stages = [arguments.split() for keyword, arguments in instructions if keyword == "FROM"]
    assert [stage[0] for stage in stages] == ["python:3.11-slim", "python:3.11-slim"]
    assert [stage[2] for stage in stages] == ["builder", "runtime"]
    final = final_stage()
    assert any(keyword == "COPY" and arguments.startswith("--from=builder ") for keyword, arguments in final)
    assert any(keyword == "RUN" and "manage.py collectstatic --noinput" in arguments for keyword, arguments in final)
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    # The user is set after the last RUN: nothing the service runs is root's.
    last_user = max(index for index, (keyword, _) in enumerate(final) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in final[last_user:])
    environment = [part for keyword, arguments in final if keyword == "ENV" for part in arguments.split()]
    assert "DJANGO_SETTINGS_MODULE=project.settings.prod" in environment
    assert dockerfile_healthcheck()[:2] == ["python", "-c"]
    assert "/healthz" in dockerfile_healthcheck()[2]


def run_healthcheck(command: list[str], **env: str) -> subprocess.CompletedProcess:
    """A healthcheck's `python -c ...`, with this environment only, as the container's Python."""
    assert command[0] == "python"
    environment = {"PATH": "/usr/bin:/bin", **env}
    return subprocess.run([sys.executable, *command[1:]], env=environment, capture_output=True, timeout=30)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers["Host"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_build_context_leaves_out_secrets_local_state_and_models():
    """`COPY . .` takes what .dockerignore does not leave out: never .env, the virtualenv, var/
    (SQLite, models), caches or a model file anywhere."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", "var", ".git", "**/*.joblib", "**/*.pkl", "**/*.sqlite3"} <= ignored
    assert {".mypy_cache", ".hypothesis", ".pytest_cache", "**/__pycache__"} <= ignored


def test_the_image_healthcheck_asks_healthz_as_an_allowed_host_on_binds_port():
    """The app answers a host not in DJANGO_ALLOWED_HOSTS with a 400, so the check sends the first."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        result = run_healthcheck(
            dockerfile_healthcheck(), BIND=f"0.0.0.0:{port}", DJANGO_ALLOWED_HOSTS=".example.com,other.example.org"
        )
        assert result.returncode == 0, result.stderr
        assert _Recorder.seen == [("/healthz", "example.com")]
    finally:
        server.shutdown()
        server.server_close()


def test_the_image_healthcheck_against_the_production_server(gunicorn_server):
    """Under production settings (HTTPS redirect on), asked over plain HTTP as Docker asks."""
    base_url = gunicorn_server(
        workers=1,
        production_config=True,
        DJANGO_SETTINGS_MODULE="project.settings.prod",
        DJANGO_SECRET_KEY=DOT_ENV["DJANGO_SECRET_KEY"],
        DJANGO_ALLOWED_HOSTS="api.example.com,127.0.0.1",  # the second for the fixture's own probe
        BEHIND_TLS_PROXY="true",
    )
    bind = urllib.parse.urlsplit(base_url).netloc
    healthy = run_healthcheck(dockerfile_healthcheck(), BIND=bind, DJANGO_ALLOWED_HOSTS="api.example.com")
    assert healthy.returncode == 0, healthy.stderr
    # A host the app does not serve is refused, and the check says unhealthy.
    refused = run_healthcheck(dockerfile_healthcheck(), BIND=bind, DJANGO_ALLOWED_HOSTS="elsewhere.example.org")
    assert refused.returncode != 0 and b"400" in refused.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nothing_there = probe.getsockname()[1]
    down = run_healthcheck(
        dockerfile_healthcheck(), BIND=f"127.0.0.1:{nothing_there}", DJANGO_ALLOWED_HOSTS="api.example.com"
    )
    assert down.returncode != 0


def test_the_workers_healthcheck_says_whether_their_database_answers(db):
    check = compose()["services"]["aggregator"]["healthcheck"]["test"]
    assert check == compose()["services"]["housekeeping"]["healthcheck"]["test"]
    database = settings.DATABASES["default"]
    password = f":{database['PASSWORD']}" if database["PASSWORD"] else ""
    url = f"postgres://{database['USER']}{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    assert run_healthcheck(check[1:], DATABASE_URL=url).returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = f"postgres://{database['USER']}@127.0.0.1:{closed}/{database['NAME']}"
    assert run_healthcheck(check[1:], DATABASE_URL=unreachable).returncode != 0
