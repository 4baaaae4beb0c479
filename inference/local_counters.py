"""Token-budget counters in this process's memory, for `make run`: one process, a local-memory
cache, no Redis (project.settings.dev). The same checks and counts as inference.budgets' two Redis
scripts, each done under one lock, so the development server's threads are held to a key's limits
as the production workers are by Redis. Production requires Redis (project.settings.prod): this
memory is not shared between processes.

Keys, arguments and answers are the scripts' own (see budgets._RESERVE_LUA and _SETTLE_LUA), so
budgets runs one code path whichever store it has.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Iterator, Sequence


class LocalCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}
        self._calls: dict[str, dict[str, int]] = {}  # a key's calls in flight: member -> start (ms)
        self._expires: dict[str, float] = {}  # key -> when it goes (epoch seconds), as Redis expires it

    def reserve(self, keys: Sequence[str], args: Sequence[int | str]) -> list[int]:
        budget_key, tpm_key, parallel_key = keys
        worst, budget, tpm, parallel = (int(value) for value in args[:4])
        member, now_ms, lease_ms = str(args[4]), int(args[5]), int(args[6])
        with self._lock:
            self._drop_expired()
            if budget >= 0:
                used = self._numbers.get(budget_key)
                if used is None:
                    return [-1]
                if used + worst > budget:
                    return [1]
            if tpm >= 0 and self._numbers.get(tpm_key, 0) + worst > tpm:
                return [2]
            if parallel >= 0:
                calls = self._calls.setdefault(parallel_key, {})
                for name, started in list(calls.items()):
                    if started <= now_ms - lease_ms:  # a call whose worker never settled it
                        del calls[name]
                if len(calls) >= parallel:
                    return [3]
                calls[member] = now_ms
                self._expires[parallel_key] = (now_ms + lease_ms) / 1000
            if budget >= 0:
                self._numbers[budget_key] += worst
            if tpm >= 0:
                self._numbers[tpm_key] = self._numbers.get(tpm_key, 0) + worst
                self._expires[tpm_key] = time.time() + 120
            return [0]

    def settle(self, keys: Sequence[str], args: Sequence[int | str]) -> int:
        change, member = int(args[0]), str(args[1])
        budget_on, tpm_on, parallel_on = (str(flag) == "1" for flag in args[2:5])
        with self._lock:
            self._drop_expired()
            for key, on in ((keys[0], budget_on), (keys[1], tpm_on)):
                if on and key in self._numbers:
                    self._numbers[key] += change
            if parallel_on:
                self._calls.get(keys[2], {}).pop(member, None)
            return 1

    def get(self, key: str) -> int | None:
        with self._lock:
            self._drop_expired()
            return self._numbers.get(key)

    def set(self, key: str, value: int, *, nx: bool = False, exat: int | None = None) -> bool:
        with self._lock:
            self._drop_expired()
            if nx and key in self._numbers:
                return False
            self._numbers[key] = int(value)
            if exat is not None:
                self._expires[key] = float(exat)
            return True

    def scan_iter(self, match: str, count: int = 100) -> Iterator[str]:
        with self._lock:
            found = [key for key in (*self._numbers, *self._calls) if fnmatch.fnmatchcase(key, match)]
        return iter(found)

    def delete(self, key: str) -> None:
        with self._lock:
            self._forget(key)

    def _drop_expired(self) -> None:
        now = time.time()
        for key in [key for key, when in self._expires.items() if when <= now]:
            self._forget(key)

    def _forget(self, key: str) -> None:
        self._numbers.pop(key, None)
        self._calls.pop(key, None)
        self._expires.pop(key, None)


COUNTERS = LocalCounters()
