"""Per-key token budgets, tokens per minute and parallel generations: exact across workers and
hosts, because every check and count is one Redis script (atomic: two workers can never both take
the last tokens). In `make run`'s one process, with no Redis, inference.local_counters does the
same checks and counts in memory.

Before an upstream call the request reserves its worst case, a bound of the prompt's tokens plus its
`max_tokens`, against the key's counters; after the call it settles to what the upstream says it
used (a cached answer used nothing); a call that fails gives its reservation back. So calls in
flight cannot together pass a budget, and what a key has spent is known at every moment. (What
this does not cover: a call that fails after the upstream billed it is given back, and calls in
flight when Redis loses a counter settle onto the re-seeded one; see the closing note of issue 16.)

- **Budget** (`token_budget_tokens` per `token_budget_period`, a UTC day or month): one counter
  per key and period. A counter Redis lost (a restart) is seeded again from the request log's
  tokens for the key and period before it is used, so spend never starts over from zero.
- **Tokens per minute**: one counter per key and UTC minute, adjusted in the minute it was taken.
- **Parallel generations**: a sorted set of the key's calls in flight, each with its start time;
  a call older than IDEMPOTENCY_UPSTREAM_LEASE_SECONDS (a worker killed mid-call) no longer counts.

The prompt's share of the worst case is a bound, not a count, whatever the model (most models'
tokenizers are not known here): a byte-level BPE tokenizer (OpenAI's, and most open models') never
makes more tokens of a text than it has UTF-8 bytes, so the prompt's bytes (its messages, names,
tool calls, tools and response format) plus OpenAI's framing are at least its tokens. A stream
the upstream reports no usage for is charged what inference.token_count counts (tiktoken's count
for OpenAI's models, this bound for others).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django_redis import get_redis_connection
from redis.commands.core import Script

from accounts.models import ApiKey
from analytics.models import RequestLog
from inference import local_counters
from inference.local_counters import LocalCounters
from project import metrics
from project.cache import STORE_ERRORS, is_redis, shared_cache
from project.errors import AppError, InvalidInput, ServiceUnavailable
from project.json import dumps

logger = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 4  # each chat message's role and framing
TOKENS_PER_REPLY = 3  # the reply's priming


def token_bound(text: str) -> int:
    """At least the tokens of `text`: its UTF-8 bytes (a byte-level BPE makes no more)."""
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_token_bound(params: dict[str, Any]) -> int:
    """At least the tokens of a chat request's prompt: the bytes of each message's content, name
    and tool calls, of the tools and the response format, plus 4 tokens a message and 3 for the
    reply (OpenAI's published chat framing)."""
    total = TOKENS_PER_REPLY
    for message in params.get("messages") or []:
        total += TOKENS_PER_MESSAGE
        for part in ("content", "name", "tool_calls", "function_call"):
            value = message.get(part)
            if value:
                total += token_bound(value if isinstance(value, str) else dumps(value).decode())
    for part in ("tools", "functions", "response_format", "tool_choice"):
        if params.get(part):
            total += token_bound(dumps(params[part]).decode())
    return total


def completion_token_bound(params: dict[str, Any]) -> int:
    """The most completion tokens a request can be answered with: max_tokens (or
    max_completion_tokens, the larger) for each of its `n` choices."""
    limit = max(params.get("max_tokens") or 0, params.get("max_completion_tokens") or 0)
    return limit * (params.get("n") or 1)


# The routes whose tokens a budget counts (their request-log rows seed a counter Redis lost);
# sentiment spends tokens with the openai backend.
BUDGETED_ENDPOINTS = ("v1:generation-list", "openai:chat-completions", "openai:embeddings", "v1:sentiment-list")


class BudgetExceeded(AppError):
    status_code = 429
    code = "budget_exceeded"
    default_message = "This API key has used its token budget for the period."


class TokensPerMinuteExceeded(AppError):
    status_code = 429
    code = "rate_limited"
    default_message = "This API key is over its tokens per minute."


class TooManyParallelRequests(AppError):
    status_code = 429
    code = "too_many_parallel_requests"
    default_message = "This API key has as many generations open as it may."
    retry_after = 1


class WorstCaseTooLarge(InvalidInput):
    """A request whose worst case is more than the key's whole budget or tokens per minute: a 429
    would never clear. Worded for a generation; a route of other parameters says it its own way."""

    def __init__(self, *, worst: int, limit: int, name: str) -> None:
        super().__init__(
            f"This request's worst case ({worst} tokens: its prompt's bound and max_tokens) is more than "
            f"this API key's whole {name} ({limit}); send a smaller max_tokens or prompt.",
            details={"max_tokens": [f"the worst case is over the key's {name}"]},
        )
        self.worst, self.limit, self.name = worst, limit, name


def whole_limit(api_key: Any) -> tuple[int, str] | None:
    """The most one call's worst case may be for the key, and which limit says so: its whole
    budget or tokens per minute, the smaller (None: neither)."""
    if not isinstance(api_key, ApiKey):
        return None
    limits = [
        (limit, name)
        for limit, name in (
            (api_key.token_budget_tokens, "token budget"),
            (api_key.tokens_per_minute, "tokens per minute"),
        )
        if limit is not None
    ]
    return min(limits) if limits else None


@dataclass
class Reservation:
    """Tokens held for one call, until it settles or is released."""

    tokens: int
    keys: list[str]
    flags: list[int]  # budget, tokens per minute, parallel: 1 where the key has that limit
    member: str = field(default_factory=lambda: uuid.uuid4().hex)
    done: bool = False


def has_limits(api_key: Any) -> bool:
    return isinstance(api_key, ApiKey) and (
        api_key.token_budget_tokens is not None
        or api_key.tokens_per_minute is not None
        or api_key.max_parallel is not None
    )


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or month `now` is in: [start, end)."""
    now = now.astimezone(UTC)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def _budget_key(api_key: ApiKey, start: datetime) -> str:
    return f"mlserve:budget:{api_key.pk}:{api_key.token_budget_period}:{start:%Y%m%d}"


# KEYS: budget, tokens-per-minute, parallel. ARGV: worst case, budget limit, tpm limit, parallel
# limit (-1: none), the call's member, now (ms), the parallel lease (ms). Returns {0} when
# reserved, {1} over the budget, {2} over tokens per minute, {3} too many in parallel, {-1} when
# the budget's counter is missing (the caller seeds it, then asks again).
_RESERVE_LUA = """
local worst = tonumber(ARGV[1])
local budget, tpm, parallel = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if budget >= 0 then
  local used = redis.call('GET', KEYS[1])
  if not used then return {-1} end
  if tonumber(used) + worst > budget then return {1} end
end
if tpm >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') + worst > tpm then return {2} end
if parallel >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[6]) - tonumber(ARGV[7]))
  if redis.call('ZCARD', KEYS[3]) >= parallel then return {3} end
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
if budget >= 0 then redis.call('INCRBY', KEYS[1], worst) end
if tpm >= 0 then
  redis.call('INCRBY', KEYS[2], worst)
  redis.call('EXPIRE', KEYS[2], 120)
end
return {0}
"""
# KEYS as above; ARGV: the change (used - reserved), the member, and 1/0 per limit.
_SETTLE_LUA = """
local change = tonumber(ARGV[1])
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], change) end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], change) end
if ARGV[5] == '1' then redis.call('ZREM', KEYS[3], ARGV[2]) end
return 1
"""
_RESERVE = Script(None, _RESERVE_LUA.encode())  # type: ignore[arg-type]  # each call names its client
_SETTLE = Script(None, _SETTLE_LUA.encode())  # type: ignore[arg-type]


class _RedisCounters:
    """The counters in the shared cache's Redis: the two scripts, and the plain reads and writes
    budgets makes (inference.local_counters has the same methods for `make run`)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def reserve(self, keys: list[str], args: list[int | str]) -> list[int]:
        return _RESERVE(keys=keys, args=args, client=self.client)

    def settle(self, keys: list[str], args: list[int | str]) -> int:
        return _SETTLE(keys=keys, args=args, client=self.client)

    def get(self, key: str) -> Any:
        return self.client.get(key)

    def set(self, key: str, value: int, *, nx: bool = False, exat: int | None = None) -> Any:
        return self.client.set(key, value, nx=nx, exat=exat)

    def scan_iter(self, match: str, count: int = 100) -> Any:
        return self.client.scan_iter(match=match, count=count)

    def delete(self, key: str) -> Any:
        return self.client.delete(key)


def _counters() -> _RedisCounters | LocalCounters:
    """Redis; or, with the local-memory cache of `make run` (one process), this process's memory."""
    if not is_redis(shared_cache()):
        return local_counters.COUNTERS
    return _RedisCounters(get_redis_connection(settings.RATELIMIT_USE_CACHE))


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("Token budgets cannot be checked right now; try again shortly.")


def reserve(api_key: Any, *, prompt_tokens: int, max_tokens: int) -> Reservation | None:
    """Hold the call's worst case against the key's limits, or raise the 429 it is over (None:
    the caller is not a key with limits)."""
    if not has_limits(api_key):
        return None
    now = datetime.now(UTC)
    worst = prompt_tokens + max_tokens
    whole = whole_limit(api_key)
    if whole is not None and worst > whole[0]:  # would wait forever: say so now
        raise WorstCaseTooLarge(worst=worst, limit=whole[0], name=whole[1])
    budget_start = budget_end = None
    budget_key = "mlserve:budget:none"
    if api_key.token_budget_tokens is not None:
        budget_start, budget_end = period_bounds(api_key.token_budget_period or "day", now)
        budget_key = _budget_key(api_key, budget_start)
    minute = int(now.timestamp() // 60)
    keys = [budget_key, f"mlserve:tpm:{api_key.pk}:{minute}", f"mlserve:parallel:{api_key.pk}"]
    limits = [
        api_key.token_budget_tokens if api_key.token_budget_tokens is not None else -1,
        api_key.tokens_per_minute if api_key.tokens_per_minute is not None else -1,
        api_key.max_parallel if api_key.max_parallel is not None else -1,
    ]
    reservation = Reservation(tokens=worst, keys=keys, flags=[int(limit >= 0) for limit in limits])
    lease_ms = settings.IDEMPOTENCY_UPSTREAM_LEASE_SECONDS * 1000
    args: list[int | str] = [worst, *limits, reservation.member, int(now.timestamp() * 1000), lease_ms]
    try:
        counters = _counters()
        (outcome,) = counters.reserve(keys, args)
        if outcome == -1 and budget_start is not None and budget_end is not None:
            _seed(counters, budget_key, api_key, budget_start, budget_end)
            (outcome,) = counters.reserve(keys, args)
    except STORE_ERRORS as exc:
        logger.error("token budgets unavailable (%s): generation refused", exc.__class__.__name__)
        raise _unavailable() from None
    if outcome == 0:
        return reservation
    if outcome == -1:  # the counter went missing again between the seed and the script
        raise _unavailable()
    metrics.count_refusal("token_budget" if outcome == 1 else "tokens_per_minute" if outcome == 2 else "parallel")
    if outcome == 1:
        assert budget_end is not None  # noqa: S101 - outcome 1 only with a budget
        error: AppError = BudgetExceeded(
            f"This API key's budget of {api_key.token_budget_tokens} tokens a {api_key.token_budget_period} "
            f"has no room for this request's worst case ({worst} tokens: the prompt and max_tokens)."
        )
        error.retry_after = max(int((budget_end - now).total_seconds()) + 1, 1)
    elif outcome == 2:
        error = TokensPerMinuteExceeded(
            f"This API key's {api_key.tokens_per_minute} tokens per minute have no room for this request's "
            f"worst case ({worst} tokens)."
        )
        error.retry_after = max(60 - int(now.timestamp()) % 60, 1)
    else:
        error = TooManyParallelRequests(
            f"This API key may have {api_key.max_parallel} generations open at once; wait for one to finish."
        )
    raise error


def _seed(counters: _RedisCounters | LocalCounters, key: str, api_key: ApiKey, start: datetime, end: datetime) -> None:
    """The budget's counter from what the request log says the key spent this period (SET NX:
    a worker that seeded it first wins)."""
    spent = RequestLog.objects.filter(
        api_key=api_key, endpoint__in=BUDGETED_ENDPOINTS, created_at__gte=start, created_at__lt=end
    ).aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    used = (spent["prompt"] or 0) + (spent["completion"] or 0)
    counters.set(key, used, nx=True, exat=int(end.timestamp()) + 86_400)


def settle(reservation: Reservation | None, *, used: int) -> None:
    """The call used `used` tokens: the reservation becomes that (never raises)."""
    if reservation is None or reservation.done:
        return
    reservation.done = True
    args: list[int | str] = [used - reservation.tokens, reservation.member, *reservation.flags]
    try:
        _counters().settle(reservation.keys, args)
    except STORE_ERRORS as exc:  # the reservation stands: errs towards refusing, never towards overspending
        logger.error("could not settle a token reservation (%s)", exc.__class__.__name__)


def release(reservation: Reservation | None) -> None:
    """The call failed before it cost anything: give its tokens back."""
    settle(reservation, used=0)


def spend(api_key: ApiKey, *, now: datetime | None = None) -> dict[str, Any] | None:
    """What the key has used of its budget this period (reservations in flight included)."""
    if api_key.token_budget_tokens is None:
        return None
    now = now or datetime.now(UTC)
    start, end = period_bounds(api_key.token_budget_period or "day", now)
    key = _budget_key(api_key, start)
    try:
        counters = _counters()
        found = counters.get(key)
        if found is None:
            _seed(counters, key, api_key, start, end)
            found = counters.get(key)
        used = int(found or 0)
    except STORE_ERRORS:
        raise ServiceUnavailable("Token budgets cannot be read right now; try again shortly.") from None
    return {
        "period": api_key.token_budget_period,
        "period_start": start,
        "period_end": end,
        "budget": api_key.token_budget_tokens,
        "used": used,
        "remaining": max(api_key.token_budget_tokens - used, 0),
    }


def reserve_for(api_key: Any, params: dict[str, Any]) -> Reservation | None:
    """reserve() for chat-completion parameters. A key with limits and a request without
    max_tokens gets GENERATION_MAX_TOKENS_LIMIT as its max_tokens, so that its worst case is known
    (the upstream's own default can be the model's whole context)."""
    if not has_limits(api_key):
        return None
    if not params.get("max_tokens") and not params.get("max_completion_tokens"):
        params["max_tokens"] = settings.GENERATION_MAX_TOKENS_LIMIT
    return reserve(api_key, prompt_tokens=prompt_token_bound(params), max_tokens=completion_token_bound(params))


def forget_spend(api_key: ApiKey) -> None:
    """Drop the key's budget counters (its budget was removed or its period changed): the next
    reservation seeds them again from the request log, so no stale count outlives a change."""
    try:
        counters = _counters()
        for key in counters.scan_iter(match=f"mlserve:budget:{api_key.pk}:*", count=100):
            counters.delete(key)
    except STORE_ERRORS as exc:
        logger.error("could not reset the budget counters of key %s (%s)", api_key.pk, exc.__class__.__name__)
