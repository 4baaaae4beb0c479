"""POST /api/v1/predictions/: everything this one route does differently, in one place (its
twin in the Open Inference Protocol, POST /v2/models/{name}/infer, reads its tensors in
inference/oip.py and then takes the same authentication, throttle and `prediction_store`).

Every other route uses the stock parts: authentication reads its rows, throttles count with
django-ratelimit, records go through the ORM and the request-log middleware. This route is the
one clients call thousands of times a second, so here, and only here:

1. **Who is asking, and the rate limit, in one Redis round trip.** The authentication class
   counts the request (INCR, an expiry for a new counter) and reads the freshness stamps in one
   Lua script (EVALSHA: one command, one round trip, atomic), then
   takes the API key, its user or the JWT's user, and the model version from this worker's
   copies (project/freshness.py), current while the stamps say so. A request refused by
   authentication has its count taken back. The route's own group, `predictions`, has its own
   counters (RATE_LIMIT_PREDICTIONS); a key's own rate applies to it as to every group.
2. **The answer is written as bytes**, not through DRF's renderer: its size is known before it
   leaves, for the request-log row.
3. **Group commit.** The prediction, its request-log row and, with an Idempotency-Key, the
   stored answer are one statement. Threads of a worker that arrive while a statement is in
   flight join the next one: the first to find none in flight writes everything queued and
   wakes the others. No timer: a request alone pays nothing extra. Each request answers only
   after its own rows are committed, so a 201 still means stored.

On a database other than PostgreSQL (the SQLite of `make run`) the rows are written through the
ORM, one request at a time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from django_redis import get_redis_connection
from redis.commands.core import Script
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.authentication import check_key, presented_key
from accounts.keys import key_prefix
from accounts.models import ApiKey
from accounts.ratelimits import split_rate, store_failed, store_is_down, subject_rate
from accounts.services import api_key_mark_used
from analytics.models import RequestLog
from analytics.recording import note_usage, request_log_values
from inference import routing, runtime, shadow, storage
from inference.features import rows_to_matrix
from inference.idempotency import stored_with_write
from inference.models import OUTPUTS_HEAD, IdempotencyRecord, ModelVersion, Prediction
from inference.serializers import ModelTargetSerializer, PredictionCreateSerializer
from project import freshness, metrics
from project.cache import STORE_ERRORS, is_redis, shared_cache
from project.context import RateUsage, context_of
from project.db import release_connection
from project.errors import DatabaseUnavailable, InvalidInput
from project.json import dumps

logger = logging.getLogger(__name__)

GROUP = "predictions"
_EXPIRATION_FUDGE = 5  # seconds a counter outlives its window, as django-ratelimit's do

# --- the worker's copies -----------------------------------------------------------------------

# Instances, built once per load and shared by the requests that use them: nothing on this route
# changes them (but last_used_at, which the copy should remember anyway).
_keys: freshness.ProcessCache[ApiKey | None] = freshness.ProcessCache(freshness.AUTH)
_users: freshness.ProcessCache[Any] = freshness.ProcessCache(freshness.AUTH)


def _key_copy(prefix: str, stamps: freshness.Stamps | None) -> ApiKey | None:
    # Unknown prefixes are remembered too, so a stream of made-up keys costs no queries.
    return _keys.get(prefix, stamps, lambda: ApiKey.objects.select_related("user").filter(prefix=prefix).first())


def _user_copy(pk: Any, stamps: freshness.Stamps | None) -> Any:
    return _users.get(pk, stamps, lambda: get_user_model().objects.filter(pk=pk).first())


# --- one round trip: the count and the stamps -----------------------------------------------------


@dataclass(frozen=True)
class _Count:
    name: str  # the counter's name in the cache (before its prefix), to take the count back
    usage: RateUsage


def _count_and_read_stamps(*, who: str, rate: str) -> tuple[_Count | None, freshness.Stamps | None]:
    """Count one request by `who` against `rate` in a fixed window and read the freshness stamps,
    in one round trip. (None, None) when the store is down (copies are then not used)."""
    if not settings.RATELIMIT_ENABLE:
        return None, freshness.read_stamps()
    if store_is_down():
        store_failed(None)
        return None, None
    limit, period = split_rate(rate)
    now = time.time()
    window = int(now // period)
    cache = shared_cache()
    name = f"rl:{GROUP}:{rate}:{window}:{who}"
    try:
        if not is_redis(cache):  # the local memory of `make run`: no Lua
            cache.add(name, 0, timeout=period + _EXPIRATION_FUDGE)
            count, stamps = cache.incr(name), freshness.read_stamps()
        else:
            keys = [cache.make_and_validate_key(name), *_stamp_keys(cache)]
            count, found = _round_trip(keys, [period + _EXPIRATION_FUDGE])
            stamps = freshness.with_missing_set(
                {
                    scope: None if value is None else cache.client.decode(value)
                    for scope, value in zip(freshness.SCOPES, found, strict=True)
                }
            )
    except STORE_ERRORS as exc:
        store_failed(exc)
        return None, None
    reset = max(int((window + 1) * period - now), 1)
    usage = RateUsage(limit=limit, remaining=max(limit - count, 0), reset_seconds=reset, limited=count > limit)
    return _Count(name=name, usage=usage), stamps


# INCR, an expiry for a new counter, and the stamps: one command (EVALSHA), one round trip, atomic.
_ROUND_TRIP_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('MGET', unpack(KEYS, 2))}
"""


# Made once (its SHA1 with it); run on the shared cache's Redis by EVALSHA, which after a Redis
# restart answers NOSCRIPT, and redis-py then loads the script and runs EVALSHA again.
_ROUND_TRIP = Script(None, _ROUND_TRIP_LUA.encode())  # type: ignore[arg-type]  # each call names its client


def _round_trip(keys: list[str], args: list[int]) -> Any:
    return _ROUND_TRIP(keys=keys, args=args, client=get_redis_connection(settings.RATELIMIT_USE_CACHE))


def _stamp_keys(cache: Any) -> list[str]:
    return [cache.make_and_validate_key(freshness.stamp_key(scope)) for scope in freshness.SCOPES]


def _take_back(counted: _Count | None) -> None:
    """A request refused by authentication is not charged. DECR on an expired key would make one
    at -1 with no expiry, so the cache's decr, which refuses to, is used."""
    if counted is None or store_is_down():
        return
    try:
        shared_cache().decr(counted.name)
    except ValueError:  # the window is over and its counter gone
        pass
    except STORE_ERRORS as exc:  # the count stands; a lost take-back only errs towards limiting
        logger.warning("could not take back a rate-limit count (%s)", exc.__class__.__name__)


# --- authentication and throttling -----------------------------------------------------------------


class PredictionAuthentication(BaseAuthentication):
    """An API key or a JWT, checked against this worker's copies, counted in the same round trip."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        key = presented_key(request)
        if key is not None:
            return self._by_key(request, key)
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Invalid Authorization header: expected 'Bearer <token>'.")
        return self._by_jwt(request, header[1])

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @staticmethod
    def _counted(request: Request, *, who: str, rate: str) -> _Count | None:
        counted, stamps = _count_and_read_stamps(who=who, rate=rate)
        context = context_of(request)
        context.stamps = stamps
        context.rate_usage = counted.usage if counted is not None else None
        return counted

    def _by_key(self, request: Request, key: str) -> tuple[Any, ApiKey]:
        prefix = key_prefix(key)
        if prefix is None:
            raise AuthenticationFailed("Invalid API key.")
        rate = subject_rate(GROUP, _keys.peek(prefix))  # the copy, current or not: its rate to count at
        counted = self._counted(request, who=f"key:{prefix}", rate=rate)
        try:
            now = timezone.now()
            api_key = check_key(_key_copy(prefix, context_of(request).stamps), key, now=now)
            if (own := subject_rate(GROUP, api_key)) != rate:  # the key's rate changed: count it right
                _take_back(counted)
                self._counted(request, who=f"key:{prefix}", rate=own)
        except AuthenticationFailed:
            _take_back(counted)
            raise
        api_key_mark_used(api_key=api_key, now=now)  # at most once a minute (the shared copy remembers)
        return api_key.user, api_key

    def _by_jwt(self, request: Request, raw: bytes) -> tuple[Any, Any]:
        token = _JWT.get_validated_token(raw)  # signature, expiry, type: simplejwt's own checks
        user_id = token.get(jwt_settings.USER_ID_CLAIM)
        if user_id is None:
            raise AuthenticationFailed("Token contained no recognizable user identification.")
        counted = self._counted(request, who=f"user:{user_id}", rate=subject_rate(GROUP, None))
        try:
            user = _user_copy(user_id, context_of(request).stamps)
            if user is None:
                raise AuthenticationFailed("User not found.", code="user_not_found")
            if jwt_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
                raise AuthenticationFailed("User is inactive.", code="user_inactive")
            if jwt_settings.CHECK_REVOKE_TOKEN and token.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(
                user.password
            ):
                raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        except AuthenticationFailed:
            _take_back(counted)
            raise
        return user, token


_JWT = JWTAuthentication()


class PredictionThrottle(BaseThrottle):
    """The count PredictionAuthentication made; nothing more to ask Redis."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        usage = context_of(request).rate_usage
        if usage is not None and usage.limited:
            self._wait = usage.reset_seconds
            metrics.count_refusal(GROUP)
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


# --- the prediction ------------------------------------------------------------------------------


def prediction_create(request: Request) -> HttpResponse:
    """POST /api/v1/predictions/: run the model a request names on its row or batch, store the
    prediction with its log row (and its Idempotency-Key's answer) in one commit, and answer 201."""
    context = context_of(request)
    # The model first, so that a request refused for its rows still counts against its model.
    data = request.data
    target = _TARGET.run_validation(data)
    route = routing.resolve(
        model=target.get("model") or settings.DEFAULT_MODEL, version=target.get("version"), stamps=context.stamps
    )
    model_version = route.model_version
    note_usage(request, model=model_version.name, version=model_version.version)
    params = _BODY.run_validation(data)
    features, instances = params.get("features"), params.get("instances")
    rows = [features] if instances is None else instances
    field_name = "features" if instances is None else "instances"
    matrix = rows_to_matrix(
        rows,
        n_features=model_version.n_features,
        feature_names=model_version.feature_names,
        field=field_name,
        single=instances is None,
    )
    user = request.user

    def answer(made: Made) -> Answer:
        body = dumps(
            {
                "id": made.prediction_id,
                "model": model_version.name,
                "version": model_version.version,
                "prediction": made.result.predictions,
                "probabilities": made.result.probabilities,
                "rows": len(rows),
                "user": user.username,
                "created_at": made.created_at.isoformat().replace("+00:00", "Z"),
            }
        )
        return Answer(status=201, body=body)

    return prediction_store(request, route=route, matrix=matrix, field=field_name, render=answer)


@dataclass(frozen=True)
class Made:
    """A prediction made and about to be stored: what an answer is rendered from."""

    prediction_id: int
    model_version: ModelVersion
    result: runtime.PredictionResult
    created_at: Any


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


def prediction_store(
    request: Request, *, route: routing.Route, matrix: Any, field: str, render: Callable[[Made], Answer]
) -> HttpResponse:
    """Run `route`'s model on `matrix` (rows already checked against it), store the prediction
    with its log row and its Idempotency-Key's answer in one commit, and answer as `render` says:
    every route that makes predictions (this API's and the Open Inference Protocol's) ends here.
    A roll-out's shadow gets a copy once the answer has been sent."""
    context = context_of(request)
    model_version = route.model_version
    loaded = runtime.load(model_version)
    started = time.perf_counter()
    result = loaded.predict(matrix)
    latency_ms = (time.perf_counter() - started) * 1000
    if not result.finite:
        # e.g. features near 1e308 overflow the model's arithmetic: the inputs are out of range.
        raise InvalidInput(
            "The model's output is not a finite number for these inputs; are the features in range?",
            details={field: ["values out of the model's range"]},
        )
    n_rows = len(matrix)
    note_usage(request, model=model_version.name, version=model_version.version, rows=n_rows)
    created_at = timezone.now()
    user = request.user

    def answer(prediction_id: int) -> Answer:
        return render(Made(prediction_id, model_version, result, created_at))

    prediction_id = _reserve_id()
    first = answer(prediction_id)
    prediction = {
        "id": prediction_id,
        "user_id": user.pk,
        "model_version_id": model_version.pk,
        "model_name": model_version.name,
        "version": model_version.version,
        "n_rows": n_rows,
        "inputs": storage.encode_matrix(matrix) if settings.STORE_PREDICTION_INPUTS else None,
        "outputs": storage.encode_outputs(indices=result.indices, values=result.values, classes=model_version.classes),
        "probabilities": None if result.matrix is None else storage.encode_matrix(result.matrix),
        "outputs_head": result.predictions[:OUTPUTS_HEAD],
        "latency_ms": latency_ms,
        "created_at": created_at,
    }
    log = request_log_values(
        request,
        status=first.status,
        error_code="",
        response_bytes=len(first.body),
        latency_ms=_elapsed_ms(context.started),
    )
    claim = context.idempotency_claim
    held = None if claim is None else stored_with_write(claim)
    pending = _Pending(prediction=prediction, log=log, claim=held, answer=first, render=answer)
    _write(pending)
    metrics.count_prediction(model=model_version.name, version=model_version.version, rows=n_rows)
    context.logged = True
    context.idempotency_settled = claim is not None
    response = _AnsweredResponse(
        pending.answer.body, status=pending.answer.status, content_type=pending.answer.content_type
    )
    for name, value in (pending.answer.headers or {}).items():
        response[name] = value
    if route.shadow is not None:
        copy = shadow.ShadowCopy(
            prediction_id=pending.prediction["id"],
            shadow=route.shadow,
            answered_version=model_version.version,
            rows=matrix,
            answer=result.values if result.values is not None else np.asarray(result.predictions),
            answered_latency_ms=latency_ms,
        )
        response.after_sent = lambda: shadow.runner.submit(copy)
    return response


class _AnsweredResponse(HttpResponse):
    """An answer with something to do once it has been sent: the WSGI server closes a response
    after its last byte has gone, so a shadow run never delays it."""

    after_sent: Callable[[], Any] | None = None

    def close(self) -> None:
        super().close()
        if self.after_sent is not None:
            self.after_sent()


# The input serializers' own fields, messages and rules, from one instance each: DRF would deep-copy
# every field of a new serializer on each request. run_validation keeps no state on the instance.
_TARGET = ModelTargetSerializer()
_BODY = PredictionCreateSerializer()


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --- the write: group commit -------------------------------------------------------------------


@dataclass
class _Pending:
    prediction: dict[str, Any]
    log: dict[str, Any]
    claim: tuple[int, str] | None  # (idempotency record id, token) to store the answer under
    answer: Answer
    render: Callable[[int], Answer]  # the answer for a given prediction id
    written: bool = False
    error: BaseException | None = None
    done: bool = False


class _IdBlocks:
    """Primary keys taken from the prediction sequence a block at a time, so a prediction's id is
    known before it is written (its answer is made first) without a query per request.

    Ids are unique; they are not in creation order across workers (created_at is), and a worker
    that stops leaves its unused ids as a gap.
    """

    BLOCK = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []

    def take(self) -> int:
        with self._lock:
            if self._free:
                return self._free.pop()
        # Fetched outside the lock: a thread waiting for the lock may hold a pooled connection that
        # this one would need. Two threads may fetch a block each; the spare ids are used later.
        table, column = Prediction._meta.db_table, Prediction._meta.pk.column
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [table, column, self.BLOCK],
            )
            block = [row[0] for row in cursor.fetchall()]
        with self._lock:
            self._free.extend(block)
            self._free.sort(reverse=True)
            return self._free.pop()

    def forget(self) -> None:
        with self._lock:
            self._free.clear()


class _GroupCommit:
    """One statement, one commit for every request of this worker waiting to be written.

    A request joins the queue; the one at its head writes everything queued at that moment and
    wakes the rest; requests that arrived during that write have a new head, which writes them.
    """

    MAX_GROUP = 64

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queue: deque[_Pending] = deque()

    def write(self, pending: _Pending) -> None:
        # A request that waits here must not hold a pooled connection meanwhile: with every slot
        # held by waiters, the head could not get one to write them (the pool's timeout, 503s).
        release_connection()
        with self._changed:
            self._queue.append(pending)
            while not pending.done and self._queue[0] is not pending:
                self._changed.wait()
            if pending.done:
                return
            group = [self._queue[index] for index in range(min(len(self._queue), self.MAX_GROUP))]
        error: BaseException | None = None
        try:
            _insert_group(group)
        except BaseException as exc:  # every request of the group learns of it, each raises its own
            error = exc
        with self._changed:
            for member in group:
                member.error, member.done = error, True
                self._queue.popleft()
            self._changed.notify_all()


_id_blocks = _IdBlocks()
_group_commit = _GroupCommit()
_pid = 0


def _reserve_id() -> int:
    _after_fork()
    if connection.vendor != "postgresql":
        return 0  # the ORM write below numbers it
    return _id_blocks.take()


def _after_fork() -> None:
    """A forked worker starts with no ids of its parent's (the parent may use them) and no queue."""
    global _id_blocks, _group_commit, _pid  # per process, by design
    if _pid != os.getpid():
        _id_blocks, _group_commit, _pid = _IdBlocks(), _GroupCommit(), os.getpid()


def forget_reserved_ids() -> None:
    """Tests: ids reserved in one test's transaction are gone after it."""
    _id_blocks.forget()


def _write(pending: _Pending) -> None:
    if connection.vendor != "postgresql":
        _write_through_orm(pending)
        return
    _group_commit.write(pending)
    if pending.error is not None:
        raise pending.error
    if not pending.written:
        # It ran past its Idempotency-Key's lease and a retry took the key: nothing of it was stored.
        logger.warning("prediction %s not stored: its Idempotency-Key was taken by a retry", pending.prediction["id"])
        raise DatabaseUnavailable()


def _write_through_orm(pending: _Pending) -> None:
    with transaction.atomic():
        values = {k: v for k, v in pending.prediction.items() if k != "id"}
        pending.prediction["id"] = Prediction.objects.create(**values).pk
        # Without PostgreSQL's sequence no id is known before the write: the answer, made with a
        # stand-in, is made again with the id the row got.
        pending.answer = pending.render(pending.prediction["id"])
        pending.log["response_bytes"] = len(pending.answer.body)
        RequestLog.objects.create(**pending.log)
        if pending.claim is not None:
            IdempotencyRecord.objects.filter(pk=pending.claim[0], token=pending.claim[1]).update(
                state="done",
                status=pending.answer.status,
                content_type=pending.answer.content_type,
                headers=pending.answer.headers,
                body=pending.answer.body,
            )
    pending.written = True


# Column types, for json_to_recordset (the batch columns travel apart, as bytea arrays).
_PREDICTION_COLUMNS = {
    "id": "bigint",
    "user_id": "integer",
    "model_version_id": "bigint",
    "model_name": "varchar",
    "version": "integer",
    "n_rows": "integer",
    "outputs_head": "jsonb",
    "latency_ms": "double precision",
    "created_at": "timestamptz",
}
_ARRAYS = ("inputs", "outputs", "probabilities")
_LOG_COLUMNS = {
    "request_id": "uuid",
    "created_at": "timestamptz",
    "method": "varchar",
    "path": "varchar",
    "endpoint": "varchar",
    "status": "smallint",
    "error_code": "varchar",
    "latency_ms": "double precision",
    "latency_bin": "smallint",
    "user_id": "integer",
    "auth_method": "varchar",
    "api_key_id": "bigint",
    "client_ip": "inet",
    "user_agent": "varchar",
    "request_bytes": "integer",
    "response_bytes": "integer",
    "model": "varchar",
    "model_version": "integer",
    "rows": "integer",
    "prompt_tokens": "integer",
    "completion_tokens": "integer",
    "cost": "double precision",
    "unpriced_tokens": "integer",
}


def _group_statement() -> str:
    """Every pending request's rows in one statement whose text is the same whatever the group's
    size, so PostgreSQL prepares it once per connection: the scalar columns as one JSON document
    (json_to_recordset; orjson writes it in C), the batch columns as three bytea arrays.

    An Idempotency-Key's answer is stored only while its request still holds the key (its
    token); a request that lost its key meanwhile gets neither its prediction nor its log row
    written (the statement's answer says which were), and answers 503.
    """
    fields = {"n": "integer"}
    fields |= {f"p_{name}": kind for name, kind in _PREDICTION_COLUMNS.items()}
    fields |= {f"l_{name}": kind for name, kind in _LOG_COLUMNS.items()}
    fields |= {
        "claim_id": "bigint",
        "claim_token": "varchar",
        "answer_status": "smallint",
        "answer_type": "varchar",
        "answer_headers": "jsonb",
    }
    record = ", ".join(f"{name} {kind}" for name, kind in fields.items())
    prediction_columns = [*_PREDICTION_COLUMNS, *_ARRAYS]
    prediction_values = [*(f"p_{name}" for name in _PREDICTION_COLUMNS), *_ARRAYS]
    return (
        f"WITH item AS (SELECT * FROM json_to_recordset(%s::json) AS i({record}) "  # noqa: S608 - our own names
        f"JOIN unnest(%s::bytea[], %s::bytea[], %s::bytea[], %s::bytea[]) WITH ORDINALITY "
        f"AS b({', '.join(_ARRAYS)}, answer, n) USING (n)), "
        f"settled AS (UPDATE {IdempotencyRecord._meta.db_table} r SET state = 'done', status = item.answer_status, "
        "content_type = item.answer_type, headers = item.answer_headers, body = item.answer FROM item "
        "WHERE item.claim_id IS NOT NULL AND r.id = item.claim_id AND r.token = item.claim_token RETURNING r.id), "
        "kept AS (SELECT * FROM item WHERE item.claim_id IS NULL OR item.claim_id IN (SELECT id FROM settled)), "
        f"predictions AS (INSERT INTO {Prediction._meta.db_table} ({', '.join(prediction_columns)}) "
        f"SELECT {', '.join(prediction_values)} FROM kept), "
        f"logged AS (INSERT INTO {RequestLog._meta.db_table} ({', '.join(_LOG_COLUMNS)}) "
        f"SELECT {', '.join(f'l_{name}' for name in _LOG_COLUMNS)} FROM kept) "
        # The reserved prediction ids say which were written: unique, where a request id a client
        # chose (X-Request-ID) need not be.
        "SELECT p_id FROM kept"
    )


_GROUP_SQL: str | None = None


def _insert_group(group: list[_Pending]) -> None:
    global _GROUP_SQL  # built once, on first use (after the apps are loaded)
    if _GROUP_SQL is None:
        _GROUP_SQL = _group_statement()
    records = []
    for n, member in enumerate(group, start=1):
        record: dict[str, Any] = {"n": n}
        record.update({f"p_{name}": member.prediction[name] for name in _PREDICTION_COLUMNS})
        record.update({f"l_{name}": member.log[name] for name in _LOG_COLUMNS})
        if member.claim is not None:
            record["claim_id"], record["claim_token"] = member.claim
            record["answer_status"] = member.answer.status
            record["answer_type"] = member.answer.content_type
            record["answer_headers"] = member.answer.headers
        records.append(record)
    params: list[str | list[Any]] = [
        dumps(records).decode(),
        *([member.prediction[name] for member in group] for name in _ARRAYS),
        [member.answer.body if member.claim is not None else None for member in group],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_GROUP_SQL, params)
        written = {row[0] for row in cursor.fetchall()}
    for member in group:
        member.written = member.prediction["id"] in written
