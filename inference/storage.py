"""A prediction's batch columns as typed arrays, not JSON.

Inputs and probabilities are little-endian float64 matrices, exactly the doubles the model read
and wrote; a classifier's outputs are indices into its registered classes (int16, or int32 past
32,767 classes), a regressor's are float64. A 1,000-row iris batch is 32 KB of inputs, 24 KB of
probabilities and 2 KB of outputs, written with no encoding step (numpy's own bytes) and stored
as they are (PostgreSQL is not asked to compress them: doubles barely compress). The detail
route, the admin and the seeding turn them back into the values the answer had.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np

FLOAT = np.dtype("<f8")


def class_index_type(classes: list[Any]) -> np.dtype:
    return np.dtype("<i2") if len(classes) <= np.iinfo(np.int16).max else np.dtype("<i4")


def encode_matrix(matrix: np.ndarray) -> bytes:
    return np.ascontiguousarray(matrix, dtype=FLOAT).tobytes()


def encode_outputs(*, indices: np.ndarray | None, values: np.ndarray | None, classes: list[Any] | None) -> bytes:
    """A classifier's class indices, or a regressor's values."""
    if classes is not None and indices is not None:
        return np.ascontiguousarray(indices, dtype=class_index_type(classes)).tobytes()
    if values is None:  # a classifier without indices, or a regressor without values: a bug upstream
        raise ValueError("no outputs to encode: neither class indices nor values")
    return encode_matrix(values)


def decode_matrix(data: bytes | memoryview, columns: int) -> list[list[float]]:
    return np.frombuffer(data, dtype=FLOAT).reshape(-1, columns).tolist()


def decode_outputs(data: bytes | memoryview, classes: list[Any] | None) -> list[Any]:
    if classes is None:
        return np.frombuffer(data, dtype=FLOAT).tolist()
    indices = np.frombuffer(data, dtype=class_index_type(classes))
    return np.asarray(classes, dtype=object)[indices].tolist()


def decode_probabilities(data: bytes | memoryview, classes: list[Any]) -> list[dict[str, float]]:
    keys = [str(label) for label in classes]
    return list(map(dict, map(zip, repeat(keys), decode_matrix(data, len(classes)))))
