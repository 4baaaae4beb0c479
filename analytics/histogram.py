"""The latency histogram kept with every usage bucket, and percentiles read from it.

Bins grow geometrically by RATIO: bin 0 holds answers under 1 ms, bin k (1..BINS-2) holds
[RATIO**(k-1), RATIO**k) ms, and the last bin everything from RATIO**(BINS-2) ms (about 39 s)
up. A percentile is reported as the geometric middle of the bin its rank falls in, so it is
within RELATIVE_ERROR of the exact value (within 0.5 ms under 1 ms; at least the last bin's
lower bound above it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BINS = 60
RATIO = 1.2
RELATIVE_ERROR = math.sqrt(RATIO) - 1  # 9.5%
_LOG_RATIO = math.log(RATIO)
FIELDS = tuple(f"h{index:02d}" for index in range(BINS))
Counts = Sequence[int] | np.ndarray  # one histogram's counts, bin by bin


# A rollup row's bins packed into one value, PostgreSQL's binary form of an int4 array (kept in
# UsageRollup.bins beside the columns): one value a row to read, and one numpy call to unpack,
# where sixty columns are sixty Python ints a row. The layout, for one dimension and no NULLs (the
# bins are NOT NULL): a 20-byte header (dimensions, flags, element type, length, lower bound),
# then each element as its byte length and its value, big-endian.
def packed_sql(counts: Sequence[str] = FIELDS) -> str:
    """SQL packing the 60 `counts` (the bin columns, or expressions summing them) into one value."""
    return f"array_send(ARRAY[{', '.join(counts)}]::int4[])"


PACKED_SQL = packed_sql()
_PACKED = np.dtype([("header", "V20"), ("bins", [("length", ">i4"), ("count", ">i4")], (BINS,))])


def unpack(blobs: Sequence[bytes]) -> np.ndarray:
    """Histograms (one row each) from packed bins."""
    return np.frombuffer(b"".join(blobs), dtype=_PACKED)["bins"]["count"].astype(np.int64)


def bin_of(latency_ms: float) -> int:
    if latency_ms < 1:
        return 0
    return min(BINS - 1, int(math.log(latency_ms) / _LOG_RATIO) + 1)


def representative_ms(index: int) -> float:
    if index == 0:
        return 0.5
    if index == BINS - 1:
        return RATIO ** (BINS - 2)
    return RATIO ** (index - 0.5)


def percentiles(counts: Counts, qs: Sequence[float]) -> list[float | None]:
    """The q-quantiles (0 < q <= 1, ascending) by nearest rank, in one pass over the bins."""
    total = sum(counts)
    if total == 0:
        return [None] * len(qs)
    ranks = [max(1, math.ceil(q * total)) for q in qs]
    found: list[float | None] = []
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        while len(found) < len(ranks) and seen >= ranks[len(found)]:
            found.append(round(representative_ms(index), 3))
        if len(found) == len(ranks):
            break
    return found


def percentile(counts: Counts, q: float) -> float | None:
    return percentiles(counts, [q])[0]


_REPRESENTATIVES = np.array([round(representative_ms(index), 3) for index in range(BINS)])


def percentiles_many(histograms: Sequence[Counts], qs: Sequence[float]) -> list[tuple[float | None, ...]]:
    """percentiles() of many histograms at once, the same answers: the usage series asks for
    three of each of its thousands of points, and a loop over their bins in Python was most of
    its time. One tuple per histogram, one value per q."""
    if not len(histograms):
        return []
    counts = np.asarray(histograms, dtype=np.int64)
    running = np.cumsum(counts, axis=1)
    totals = running[:, -1]
    columns = []
    for q in qs:
        ranks = np.maximum(1, np.ceil(q * totals))
        # the first bin whose running count reaches the rank: the number of bins short of it
        index = np.minimum((running < ranks[:, None]).sum(axis=1), BINS - 1)
        columns.append(_REPRESENTATIVES[index].tolist())
    found: list[tuple[float | None, ...]] = list(zip(*columns, strict=True))
    nothing = (None,) * len(qs)
    for row in np.flatnonzero(totals == 0).tolist():
        found[row] = nothing
    return found
