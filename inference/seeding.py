"""Synthetic traffic for measuring analytics: users, keys, an endpoint and status mix, and a
latency distribution with a tail, written into the request log (and the predictions table)
that real requests write, then aggregated like real traffic.

On PostgreSQL rows go in with COPY, a chunk at a time, so ten million take minutes; elsewhere
(the SQLite of `make run`) with bulk inserts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create
from analytics.histogram import BINS, RATIO
from analytics.models import RequestLog
from inference.models import ModelVersion, Prediction
from inference.training import demo_models_train
from project.prices import price_of

# (method, endpoint, path, share of traffic, median latency ms, model, token use)
ENDPOINTS = [
    ("POST", "v1:prediction-list", "/api/v1/predictions/", 0.52, 9.0, "iris", False),
    ("POST", "v1:prediction-list", "/api/v1/predictions/", 0.10, 14.0, "diabetes", False),
    ("GET", "v1:prediction-list", "/api/v1/predictions/", 0.07, 12.0, "", False),
    ("GET", "v1:model-list", "/api/v1/models/", 0.05, 6.0, "", False),
    ("POST", "v1:sentiment-list", "/api/v1/sentiment/", 0.12, 5.0, "", False),
    ("POST", "v1:generation-list", "/api/v1/generations/", 0.05, 1400.0, "", True),
    ("POST", "openai:chat-completions", "/v1/chat/completions", 0.05, 1800.0, "", True),
    ("POST", "v1:token-obtain", "/api/v1/auth/token/", 0.03, 40.0, "", False),
    ("GET", "v1:analytics-summary", "/api/v1/analytics/summary/", 0.01, 30.0, "", False),
]
STATUSES = {"POST": (201, 0.93), "GET": (200, 0.95)}
ERRORS = [(400, 0.40), (401, 0.20), (404, 0.12), (429, 0.15), (500, 0.03), (502, 0.06), (504, 0.04)]
USERS, KEYS_PER_USER = 20, 2
LLM_MODEL = "gpt-4o-mini"  # the model the generation routes' rows name, priced by the price table


@dataclass(frozen=True)
class SeedResult:
    rows: int
    predictions: int
    start: datetime
    end: datetime


def _actors() -> tuple[list[int], list[list[int]]]:
    User = get_user_model()
    user_ids, key_ids = [], []
    for index in range(USERS):
        user, created = User.objects.get_or_create(username=f"seed-user-{index:02d}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user_ids.append(user.pk)
        keys = list(ApiKey.objects.filter(user=user).values_list("pk", flat=True)[:KEYS_PER_USER])
        while len(keys) < KEYS_PER_USER:
            keys.append(api_key_create(user=user, name=f"seed key {len(keys)}", created_by=None).api_key.pk)
        key_ids.append(keys)
    return user_ids, key_ids


def _model_versions() -> dict[str, tuple[int, int]]:
    if ModelVersion.objects.filter(is_active=True, name__in=["iris", "diabetes"]).count() != 2:
        demo_models_train(only_missing=True)
    return {
        m.name: (m.pk, m.version) for m in ModelVersion.objects.filter(is_active=True, name__in=["iris", "diabetes"])
    }


def _bins(latency: np.ndarray) -> np.ndarray:
    safe = np.maximum(latency, 1.0)
    index = np.floor(np.log(safe) / math.log(RATIO)).astype(np.int64) + 1
    return np.where(latency < 1, 0, np.minimum(BINS - 1, index))


def _chunk(rng: np.random.Generator, n: int, start: datetime, seconds: float, actors: tuple) -> dict[str, np.ndarray]:
    user_ids, key_ids = actors
    shares = np.array([e[3] for e in ENDPOINTS])
    endpoint = rng.choice(len(ENDPOINTS), size=n, p=shares / shares.sum())
    # Busier by day than by night.
    offsets = rng.random(n) * seconds
    hour_of_day = ((offsets / 3600) + start.hour) % 24
    keep = rng.random(n) < 0.35 + 0.65 * np.sin(np.pi * hour_of_day / 24) ** 2
    offsets = np.where(keep, offsets, rng.random(n) * seconds)
    # A few heavy users, a long tail of light ones.
    weights = 1 / np.arange(1, USERS + 1) ** 1.1
    user = rng.choice(USERS, size=n, p=weights / weights.sum())
    anonymous = rng.random(n) < 0.02
    with_key = (rng.random(n) < 0.4) & ~anonymous
    key = np.array([key_ids[u][k] for u, k in zip(user, rng.integers(0, KEYS_PER_USER, size=n), strict=True)])
    methods = np.array([e[0] for e in ENDPOINTS])[endpoint]
    ok_status = np.where(methods == "POST", 201, 200)
    ok_share = np.where(methods == "POST", STATUSES["POST"][1], STATUSES["GET"][1])
    error_codes = np.array([code for code, _ in ERRORS])
    error_p = np.array([p for _, p in ERRORS])
    status = np.where(rng.random(n) < ok_share, ok_status, rng.choice(error_codes, size=n, p=error_p / error_p.sum()))
    status = np.where(anonymous, 401, status)
    medians = np.array([e[4] for e in ENDPOINTS])[endpoint]
    latency = medians * rng.lognormal(0.0, 0.45, size=n)
    tail = rng.random(n) < 0.01
    latency = np.where(tail, latency * rng.uniform(5, 40, size=n), latency)
    latency = np.round(latency, 3)
    is_prediction = (np.array([e[5] != "" for e in ENDPOINTS])[endpoint]) & (status == 201)
    batch = np.where(rng.random(n) < 0.8, 1, rng.integers(2, 1001, size=n))
    rows = np.where(is_prediction, batch, 0)
    uses_tokens = np.array([e[6] for e in ENDPOINTS])[endpoint] & (status < 400)
    prompt_tokens = np.where(uses_tokens, rng.integers(20, 500, size=n), 0)
    completion_tokens = np.where(uses_tokens, rng.integers(10, 800, size=n), 0)
    return {
        "endpoint": endpoint,
        "offsets": offsets,
        "user": np.array(user_ids)[user],
        "anonymous": anonymous,
        "key": np.where(with_key, key, 0),
        "status": status,
        "latency": latency,
        "bin": _bins(latency),
        "rows": rows,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "is_prediction": is_prediction,
    }


_LOG_COLUMNS = (
    "request_id, created_at, method, path, endpoint, status, error_code, latency_ms, latency_bin, user_id, "
    "auth_method, api_key_id, client_ip, user_agent, request_bytes, response_bytes, model, rows, "
    "prompt_tokens, completion_tokens, cost, unpriced_tokens"
)
_PREDICTION_COLUMNS = (
    "user_id, model_version_id, model_name, version, n_rows, outputs, outputs_head, latency_ms, created_at"
)
# A synthetic first output per prediction (class 0, or 0.0), as the typed arrays store it
# (inference/storage.py), written as COPY text writes bytea.
_SEED_OUTPUT = {"iris": "\\\\x0000", "diabetes": "\\\\x0000000000000000"}


def usage_seed(*, rows: int, days: float, seed: int = 7, chunk: int = 200_000) -> SeedResult:
    rng = np.random.default_rng(seed)
    actors = _actors()
    versions = _model_versions()
    end = timezone.now().replace(microsecond=0)
    start = end - timedelta(days=days)
    total_seconds = (end - start).total_seconds()
    written = predictions = 0
    postgres = connection.vendor == "postgresql"
    while written < rows:
        n = min(chunk, rows - written)
        # Each chunk covers its share of the period, so rows land in time order like real traffic.
        chunk_start = start + timedelta(seconds=total_seconds * written / rows)
        data = _chunk(rng, n, chunk_start, total_seconds * n / rows, actors)
        writer = _copy if postgres else _bulk
        predictions += writer(data, chunk_start, versions)
        written += n
    return SeedResult(rows=written, predictions=predictions, start=start, end=end)


def _lines(data: dict[str, np.ndarray], chunk_start: datetime, versions: dict[str, tuple[int, int]]) -> tuple[str, str]:
    """The chunk as COPY text (tab-separated, \\N for NULL), built column by column in numpy."""
    n = len(data["status"])
    hex_ids = os.urandom(16 * n).hex()
    ids = [hex_ids[32 * i : 32 * i + 32] for i in range(n)]
    epoch_us = np.int64(chunk_start.timestamp() * 1_000_000) + (data["offsets"] * 1_000_000).astype(np.int64)
    created = np.datetime_as_string(epoch_us.astype("datetime64[us]"), unit="us", timezone="UTC")
    pick = data["endpoint"]
    methods, paths, names, models = (np.array([e[i] for e in ENDPOINTS]) for i in (0, 2, 1, 5))
    status = data["status"]
    anonymous, key, user = data["anonymous"], data["key"], data["user"]
    spent = data["prompt_tokens"] + data["completion_tokens"]
    model = np.where(data["is_prediction"], models[pick], np.where(spent > 0, LLM_MODEL, ""))
    price = price_of(LLM_MODEL, settings.LLM_PRICES)
    if price is None:
        cost, unpriced = np.zeros(n), spent
    else:
        cost = price.cost(data["prompt_tokens"], data["completion_tokens"])
        unpriced = np.zeros(n, dtype=np.int64)
    log_columns = [
        ids,
        created,
        methods[pick],
        paths[pick],
        names[pick],
        status.astype(str),
        np.where(status < 400, "", "seeded_error"),
        np.char.mod("%.3f", data["latency"]),
        data["bin"].astype(str),
        np.where(anonymous, "\\N", user.astype(str)),
        np.where(anonymous, "", np.where(key > 0, "api_key", "jwt")),
        np.where(key > 0, key.astype(str), "\\N"),
        np.char.add(np.char.add("10.1.", (user % 250).astype(str)), ".7"),
        np.full(n, "seed_usage/1.0"),
        np.full(n, "120"),
        np.full(n, "300"),
        model,
        data["rows"].astype(str),
        data["prompt_tokens"].astype(str),
        data["completion_tokens"].astype(str),
        cost.astype(str),
        unpriced.astype(str),
    ]
    logs = "".join("\t".join(row) + "\n" for row in zip(*log_columns, strict=True))
    mask = data["is_prediction"]
    version_pk = np.array([versions[m][0] if m else 0 for m in models])
    version_no = np.array([versions[m][1] if m else 0 for m in models])
    prediction_columns = [
        user[mask].astype(str),
        version_pk[pick][mask].astype(str),
        model[mask],
        version_no[pick][mask].astype(str),
        data["rows"][mask].astype(str),
        np.array([_SEED_OUTPUT[name] for name in model[mask]], dtype=object).astype(str),
        np.full(int(mask.sum()), "[0]"),
        np.char.mod("%.3f", data["latency"][mask] / 3),
        created[mask],
    ]
    predictions = "".join("\t".join(row) + "\n" for row in zip(*prediction_columns, strict=True))
    return logs, predictions


def _copy(data: dict[str, np.ndarray], chunk_start: datetime, versions: dict[str, tuple[int, int]]) -> int:
    logs, predictions = _lines(data, chunk_start, versions)
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f"COPY analytics_requestlog ({_LOG_COLUMNS}) FROM STDIN") as copy:
            copy.write(logs)
        with raw.copy(f"COPY inference_prediction ({_PREDICTION_COLUMNS}) FROM STDIN") as copy:
            copy.write(predictions)
    return predictions.count("\n")


def _bulk(data: dict[str, np.ndarray], chunk_start: datetime, versions: dict[str, tuple[int, int]]) -> int:
    log_text, prediction_text = _lines(data, chunk_start, versions)
    logs, predictions = [], []
    for line in log_text.splitlines():
        f = line.rstrip("\n").split("\t")
        logs.append(
            RequestLog(
                request_id=f[0],
                created_at=datetime.fromisoformat(f[1]),
                method=f[2],
                path=f[3],
                endpoint=f[4],
                status=int(f[5]),
                error_code=f[6],
                latency_ms=float(f[7]),
                latency_bin=int(f[8]),
                user_id=None if f[9] == "\\N" else int(f[9]),
                auth_method=f[10],
                api_key_id=None if f[11] == "\\N" else int(f[11]),
                client_ip=f[12],
                user_agent=f[13],
                request_bytes=int(f[14]),
                response_bytes=int(f[15]),
                model=f[16],
                rows=int(f[17]),
                prompt_tokens=int(f[18]),
                completion_tokens=int(f[19]),
                cost=float(f[20]),
                unpriced_tokens=int(f[21]),
            )
        )
    for line in prediction_text.splitlines():
        f = line.rstrip("\n").split("\t")
        predictions.append(
            Prediction(
                user_id=None if f[0] == "\\N" else int(f[0]),
                model_version_id=int(f[1]),
                model_name=f[2],
                version=int(f[3]),
                n_rows=int(f[4]),
                outputs=bytes.fromhex(f[5].removeprefix("\\\\x")),
                outputs_head=[0],
                latency_ms=float(f[7]),
                created_at=datetime.fromisoformat(f[8]),
            )
        )
    with transaction.atomic():
        RequestLog.objects.bulk_create(logs, batch_size=2000)
        Prediction.objects.bulk_create(predictions, batch_size=2000)
    return len(predictions)
