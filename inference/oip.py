"""The Open Inference Protocol v2 (KServe, Triton, MLServer) over REST: its tensors in and out.

An inference request is a JSON header, optionally followed by the inputs' raw bytes (the binary
tensor data extension, which tritonclient uses by default): `Inference-Header-Content-Length`
says where the JSON ends, and each binary input says its size in `parameters.binary_data_size`.
Rows reach a model as one input of shape [rows, n_features], or one input per feature named by
the model's feature names (MLServer's pandas codec sends these), each of shape [rows] or [rows, 1].

Outputs are named as MLServer's scikit-learn runtime names them: `predict` (always) and
`predict_proba` (classifiers, when asked for). An output is sent as raw bytes when the request
asks for it (`parameters.binary_data` on the output, or `binary_data_output` on the request).

Every message here is the whole error a client sees: the protocol's error is one string.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser

from inference.models import ModelVersion
from project.errors import InvalidInput, PayloadTooLarge
from project.json import JSONParser
from project.request_bodies import CHUNKED

HEADER_LENGTH = "Inference-Header-Content-Length"
_HEADER_LENGTH_META = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"
_DIGITS = re.compile(r"[0-9]{1,10}")

# The protocol's numeric types, as numpy reads them from the wire (little-endian).
_NUMERIC = {
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = frozenset((*_NUMERIC, "BOOL", "BYTES"))
MAX_INPUTS = 1024  # a model with more features than this takes one input, not one per feature
PREDICT, PREDICT_PROBA = "predict", "predict_proba"


@dataclass(frozen=True)
class InferenceBody:
    """A parsed request: its JSON header and the bytes after it."""

    header: dict[str, Any]
    binary: bytes

    def fingerprint_bytes(self) -> bytes:
        """What identifies the request, for Idempotency-Key: its header's content, then its bytes."""
        return orjson.dumps(self.header, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS) + b"\n" + self.binary


class InferenceBodyParser(BaseParser):
    """Any body the protocol allows: JSON alone, or JSON then binary tensors. Clients send it
    with any content type or none (tritonclient sends none), so every media type is taken."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        context = parser_context or {}
        request = context.get("request")
        meta = request._request.META if request is not None else {}
        if meta.get("HTTP_CONTENT_ENCODING", "identity").lower() != "identity":
            raise UnsupportedMediaType(meta["HTTP_CONTENT_ENCODING"], "Compressed request bodies are not accepted.")
        limit = settings.MAX_REQUEST_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes.")
        declared = meta.get(_HEADER_LENGTH_META)
        length = len(raw)
        if declared is not None:
            if not _DIGITS.fullmatch(declared) or int(declared) > len(raw):
                raise ParseError(
                    f"{HEADER_LENGTH} must be a whole number of bytes, at most the body's {len(raw)}; got {declared!r}."
                )
            length = int(declared)
        try:  # the JSON part by the service's own JSON rules (strict numbers, bounded depth)
            header = JSONParser().parse(io.BytesIO(raw[:length]), "application/json", {**context, "encoding": "utf-8"})
        finally:
            if meta.get(CHUNKED):  # its real length, for the request log (the JSON parser saw only a part)
                meta["CONTENT_LENGTH"] = str(len(raw))
        if type(header) is not dict:
            raise ParseError("The inference request must be a JSON object.")
        return InferenceBody(header=header, binary=raw[length:])


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, details={"inputs": [message]})


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray  # flat, in the datatype's own numpy type


def request_id(body: InferenceBody) -> str | None:
    found = body.header.get("id")
    if found is not None and type(found) is not str:
        raise InvalidInput("The request's 'id' must be a string.", details={"id": ["must be a string"]})
    return found


def read_inputs(body: InferenceBody) -> list[Tensor]:
    """The request's input tensors, each checked against its own shape and datatype."""
    inputs = body.header.get("inputs")
    if type(inputs) is not list or not inputs:
        raise _invalid("'inputs' must be a non-empty array of tensors.")
    if len(inputs) > MAX_INPUTS:
        raise _invalid(f"At most {MAX_INPUTS} inputs are accepted; got {len(inputs)}.")
    tensors, offset = [], 0
    for index, item in enumerate(inputs):
        tensor, offset = _read_input(index, item, body.binary, offset)
        tensors.append(tensor)
    if offset != len(body.binary):
        raise _invalid(
            f"{len(body.binary)} bytes of binary data follow the JSON; the inputs' binary_data_size add up to {offset}."
        )
    names = [tensor.name for tensor in tensors]
    if len(set(names)) != len(names):
        raise _invalid("Input names must be unique.")
    return tensors


def _read_input(index: int, item: Any, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if type(item) is not dict:
        raise _invalid(f"inputs[{index}] must be an object with name, datatype, shape and data.")
    name = item.get("name")
    if type(name) is not str or not name:
        raise _invalid(f"inputs[{index}]: 'name' must be a non-empty string.")
    label = f"input {name!r}"
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise _invalid(f"{label}: unknown datatype {datatype!r}; expected one of {sorted(DATATYPES)}.")
    if datatype not in _NUMERIC:
        raise _invalid(f"{label}: datatype {datatype} is not accepted; these models take numbers (FP*, INT*, UINT*).")
    shape = item.get("shape")
    if type(shape) is not list or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise _invalid(f"{label}: 'shape' must be a non-empty array of non-negative integers.")
    count = math.prod(shape)
    if count > settings.MAX_REQUEST_BODY_BYTES:  # more values than the body could hold: no arithmetic on it
        raise PayloadTooLarge(f"{label}: shape {shape} holds more values than a request can carry.")
    parameters = item.get("parameters", {})
    if type(parameters) is not dict:
        raise _invalid(f"{label}: 'parameters' must be an object.")
    size = parameters.get("binary_data_size")
    dtype = np.dtype(_NUMERIC[datatype])
    if size is not None:
        if type(size) is not int or size < 0:
            raise _invalid(f"{label}: binary_data_size must be a non-negative integer.")
        if "data" in item:
            raise _invalid(f"{label}: send 'data' or binary_data_size, not both.")
        if offset + size > len(binary):
            raise _invalid(f"{label}: binary_data_size {size} runs past the {len(binary) - offset} bytes left.")
        if size != count * dtype.itemsize:
            raise _invalid(
                f"{label}: shape {shape} of {datatype} is {count * dtype.itemsize} bytes; binary_data_size says {size}."
            )
        values = np.frombuffer(binary, dtype=dtype, count=count, offset=offset)
        return Tensor(name, datatype, shape, values), offset + size
    if "data" not in item:
        raise _invalid(f"{label}: 'data' is missing (or give parameters.binary_data_size and send it as bytes).")
    flat = _flatten(item["data"], shape, label)
    if len(flat) != count:
        raise _invalid(f"{label}: shape {shape} holds {count} values; 'data' has {len(flat)}.")
    return Tensor(name, datatype, shape, _typed(flat, datatype, dtype, label)), offset


def _flatten(data: Any, shape: list[int], label: str) -> list[Any]:
    """`data`, flat or nested exactly as the shape (row-major), as one list."""
    if type(data) is not list:
        raise _invalid(f"{label}: 'data' must be an array (flat, or nested as the shape).")
    if all(type(value) is not list for value in data):
        return data
    if len(shape) == 2 and len(data) == shape[0] and all(type(row) is list and len(row) == shape[1] for row in data):
        return list(itertools.chain.from_iterable(data))  # rows, the usual nesting: no copy through numpy
    try:
        nested = np.array(data, dtype=object)
    except ValueError:  # ragged: rows of different lengths, or arrays beside numbers
        raise _invalid(f"{label}: 'data' is nested unevenly; nest it as the shape {shape}, or send it flat.") from None
    if list(nested.shape) != shape:
        raise _invalid(f"{label}: 'data' is nested as {list(nested.shape)}; the shape says {shape}.")
    return nested.reshape(-1).tolist()


def _typed(flat: list[Any], datatype: str, dtype: np.dtype, label: str) -> np.ndarray:
    kinds = set(map(type, flat))
    if datatype.startswith(("INT", "UINT")):
        if not kinds <= {int}:
            raise _invalid(f"{label}: {datatype} data must be whole numbers; found {_kind_names(kinds - {int})}.")
        info = np.iinfo(dtype)
        if flat and (min(flat) < info.min or max(flat) > info.max):
            raise _invalid(f"{label}: a value is outside {datatype}'s range [{info.min}, {info.max}].")
        return np.array(flat, dtype=dtype)
    if not kinds <= {int, float}:
        raise _invalid(f"{label}: {datatype} data must be numbers; found {_kind_names(kinds - {int, float})}.")
    try:
        wide = np.array(flat, dtype=np.float64)
    except OverflowError:
        raise _invalid(f"{label}: a value is outside {datatype}'s range.") from None
    with np.errstate(over="ignore"):
        values = wide.astype(dtype)
    if not np.isfinite(values).all():  # the JSON parser refuses NaN: only an overflow gets here
        raise _invalid(f"{label}: a value is outside {datatype}'s range.")
    return values


def _kind_names(kinds: set[type]) -> str:
    names = {bool: "booleans", str: "strings", dict: "objects", type(None): "nulls", float: "fractions"}
    return ", ".join(sorted(names.get(kind, kind.__name__) for kind in kinds))


def to_matrix(tensors: list[Tensor], model_version: ModelVersion) -> np.ndarray:
    """The float64 rows a model takes, from one [rows, n_features] input or one input per feature."""
    n_features, names = model_version.n_features, model_version.feature_names
    if len(tensors) == 1 and len(tensors[0].shape) == 2:
        tensor = tensors[0]
        if tensor.shape[1] != n_features:
            raise _invalid(
                f"input {tensor.name!r}: expected shape [-1, {n_features}] for {model_version}, got {tensor.shape}."
            )
        matrix = tensor.values.astype(np.float64, copy=False).reshape(tensor.shape)
    elif names and {tensor.name for tensor in tensors} <= set(names):
        by_name = {tensor.name: tensor for tensor in tensors}
        if missing := [name for name in names if name not in by_name]:
            raise _invalid(f"Inputs by feature name: missing {missing}.")
        rows = {tensor.shape[0] for tensor in tensors}
        if len(rows) != 1 or any(tensor.shape not in ([tensor.shape[0]], [tensor.shape[0], 1]) for tensor in tensors):
            raise _invalid("Inputs by feature name must each have shape [rows] or [rows, 1], with the same rows.")
        matrix = np.column_stack([by_name[name].values.astype(np.float64).reshape(-1) for name in names])
    else:
        expected = f"one input of shape [-1, {n_features}]"
        if names:
            expected += f", or one input per feature named {names}"
        raise _invalid(f"{model_version} takes {expected}.")
    if len(matrix) == 0:
        raise _invalid("Expected at least one row.")
    if len(matrix) > settings.MAX_BATCH_ROWS:
        raise PayloadTooLarge(
            f"The batch has {len(matrix)} rows; the limit is {settings.MAX_BATCH_ROWS}.",
            details={"inputs": [f"at most {settings.MAX_BATCH_ROWS} rows per request"]},
        )
    if not np.isfinite(matrix).all():
        raise _invalid("Inputs must be finite numbers (no NaN or infinity).")
    return np.ascontiguousarray(matrix)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


def requested_outputs(body: InferenceBody, model_version: ModelVersion) -> list[RequestedOutput]:
    """What the answer carries: `predict` when nothing is asked for, else what is asked for."""
    header = body.header
    parameters = header.get("parameters", {})
    if type(parameters) is not dict:
        raise InvalidInput("'parameters' must be an object.", details={"parameters": ["must be an object"]})
    binary_all = parameters.get("binary_data_output") is True
    asked = header.get("outputs")
    if asked is None:
        return [RequestedOutput(PREDICT, binary_all)]
    if type(asked) is not list or not asked:
        raise InvalidInput("'outputs' must be a non-empty array.", details={"outputs": ["must be a non-empty array"]})
    available = output_names(model_version)
    found: list[RequestedOutput] = []
    for item in asked:
        name = item.get("name") if type(item) is dict else None
        if name not in available:
            message = f"Unknown output {name!r}; {model_version} gives {available}."
            raise InvalidInput(message, details={"outputs": [message]})
        options = item.get("parameters", {})
        if type(options) is not dict:
            raise InvalidInput("An output's 'parameters' must be an object.", details={"outputs": ["bad parameters"]})
        binary = options.get("binary_data")
        found.append(RequestedOutput(name, binary if type(binary) is bool else binary_all))
    if len({output.name for output in found}) != len(found):
        raise InvalidInput("Each output may be asked for once.", details={"outputs": ["duplicate names"]})
    return found


def output_names(model_version: ModelVersion) -> list[str]:
    return [PREDICT, PREDICT_PROBA] if model_version.classes is not None else [PREDICT]


def predict_datatype(model_version: ModelVersion) -> str:
    """The datatype of `predict`: the classes' own kind (labels), or FP64 (a regressor's values)."""
    classes = model_version.classes
    if classes is None:
        return "FP64"
    kinds = set(map(type, classes))
    if kinds <= {bool}:
        return "BOOL"
    if kinds <= {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return "BYTES"


def model_metadata(model_version: ModelVersion, versions: list[int]) -> dict[str, Any]:
    outputs = [{"name": PREDICT, "datatype": predict_datatype(model_version), "shape": [-1]}]
    if model_version.classes is not None:
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(model_version.classes)]})
    parameters: dict[str, Any] = {"task": model_version.task, "version": str(model_version.version)}
    if model_version.feature_names:
        parameters["feature_names"] = model_version.feature_names
    if model_version.classes is not None:
        parameters["classes"] = model_version.classes
    return {
        "name": model_version.name,
        "versions": [str(version) for version in versions],
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, model_version.n_features]}],
        "outputs": outputs,
        "parameters": parameters,
    }


def _output_array(name: str, datatype: str, result: Any) -> np.ndarray:
    if name == PREDICT_PROBA:
        return np.asarray(result.matrix, dtype=np.float64)
    if datatype == "BYTES":
        return np.asarray([str(label) for label in result.predictions], dtype=object)
    return np.asarray(result.predictions, dtype={"BOOL": np.bool_, "INT64": np.int64}.get(datatype, np.float64))


def _as_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":  # each element: its length (4 bytes, little-endian), then its UTF-8
        parts = [str(value).encode() for value in array.reshape(-1)]
        return b"".join(len(part).to_bytes(4, "little") + part for part in parts)
    wire = {"BOOL": "|b1", "INT64": "<i8", "FP64": "<f8"}[datatype]
    return np.ascontiguousarray(array, dtype=wire).tobytes()


def encode_response(
    *,
    model_version: ModelVersion,
    request_id: str | None,
    outputs: list[RequestedOutput],
    result: Any,
    prediction_id: int,
) -> tuple[bytes, str, dict[str, str] | None]:
    """The answer's bytes, content type and headers: JSON alone, or JSON then binary outputs."""
    header: dict[str, Any] = {"model_name": model_version.name, "model_version": str(model_version.version)}
    if request_id is not None:
        header["id"] = request_id
    header["parameters"] = {"prediction_id": prediction_id}
    header["outputs"] = []
    buffers: list[bytes] = []
    for output in outputs:
        datatype = "FP64" if output.name == PREDICT_PROBA else predict_datatype(model_version)
        array = _output_array(output.name, datatype, result)
        tensor: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": list(array.shape)}
        if output.binary:
            raw = _as_bytes(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            tensor["data"] = array.reshape(-1).tolist()
        header["outputs"].append(tensor)
    document = orjson.dumps(header)
    if not buffers:
        return document, "application/json", None
    return document + b"".join(buffers), "application/octet-stream", {HEADER_LENGTH: str(len(document))}
