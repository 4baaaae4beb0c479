"""The Open Inference Protocol v2 REST routes, at /v2, for the clients teams already use
(tritonclient, KServe's, MLServer's): read the protocol's tensors (inference/oip.py), call the
prediction route's own services, answer in the protocol's shapes. Errors take the protocol's
shape, {"error": "..."}, on the one error path (project/error_handlers.py).

The server's liveness, readiness and metadata are open, like /healthz; everything about a model
needs this service's credentials. An inference is the prediction route in another dress: the
same authentication and limit (inference/fast_path.py), Idempotency-Key, record and roll-out.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ParseError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.recording import note_usage
from inference import fast_path, oip, routing, runtime, selectors
from inference.idempotency import idempotent
from inference.models import ModelVersion
from project import health
from project.context import context_of
from project.errors import InvalidInput, NotFound, ServiceUnavailable

SERVER_NAME = "mlserve"
SERVER_VERSION = "1.0"
EXTENSIONS = ["binary_tensor_data"]


_NUMBER = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() takes "²", which int() refuses


def _is_number(version: str) -> bool:
    return _NUMBER.fullmatch(version) is not None


def _model_named(name: str, version: str | None) -> str:
    """The `model` a path names: `name`, or `name@alias` when the version segment is a label."""
    if version is None or _is_number(version):
        return name
    if "@" in name:
        raise InvalidInput(f"{name!r} names an alias already; leave out /versions/{version}.")
    return f"{name}@{version}"


def _version_number(version: str | None) -> int | None:
    if version is None or not _is_number(version):
        return None
    number = int(version)
    if not 0 < number < 2**31:
        raise NotFound(f"No version {version}.")
    return number


def _model_version(name: str, version: str | None) -> ModelVersion:
    """For metadata and readiness: what the path names, without a roll-out's choice."""
    return selectors.model_version_named(model=_model_named(name, version), version=_version_number(version))


@extend_schema(exclude=True)  # the protocol is specified by its own document (KServe's open-inference-protocol)
class ServerMetadataView(APIView):
    """GET /v2: who this server is and which protocol extensions it speaks."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        return Response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


@extend_schema(exclude=True)
class ServerLiveView(ServerMetadataView):
    def get(self, request: Request) -> Response:
        return Response({"live": True})


@extend_schema(exclude=True)
class ServerReadyView(ServerMetadataView):
    """Ready when /readyz is: the database, the cache and the default model are usable."""

    def get(self, request: Request) -> Response:
        problems = health.readiness_problems()
        if problems:
            raise ServiceUnavailable(f"Not ready: {', '.join(sorted(problems))}.")
        return Response({"ready": True})


@extend_schema(exclude=True)
class ModelMetadataView(APIView):
    """GET /v2/models/{name}[/versions/{version}]: inputs and outputs, with datatypes and shapes."""

    def get(self, request: Request, name: str, version: str | None = None) -> Response:
        model_version = _model_version(name, version)
        versions = selectors.model_versions_by_name(names=[model_version.name])[model_version.name]
        return Response(oip.model_metadata(model_version, versions))


@extend_schema(exclude=True)
class ModelReadyView(APIView):
    """GET /v2/models/{name}[/versions/{version}]/ready: 200 once its file loads and checks out."""

    def get(self, request: Request, name: str, version: str | None = None) -> Response:
        model_version = _model_version(name, version)
        runtime.load(model_version)  # ModelUnavailable (503) when its file is missing or tampered with
        return Response({"name": model_version.name, "version": str(model_version.version), "ready": True})


@extend_schema(exclude=True)
class InferView(APIView):
    """POST /v2/models/{name}[/versions/{version}]/infer."""

    parser_classes = [oip.InferenceBodyParser]

    def _inferring(self) -> bool:
        return self.request is not None and self.request.method == "POST"

    def get_authenticators(self) -> list[Any]:
        # The prediction route's own authentication and throttle (inference/fast_path.py) for the
        # inference itself; any other method meets the stock ones, and its 405.
        return [fast_path.PredictionAuthentication()] if self._inferring() else super().get_authenticators()

    def get_throttles(self) -> list[Any]:
        return [fast_path.PredictionThrottle()] if self._inferring() else super().get_throttles()

    @idempotent(lease_setting="IDEMPOTENCY_LEASE_SECONDS")
    def post(self, request: Request, name: str, version: str | None = None) -> Any:
        context = context_of(request)
        route = routing.resolve(
            model=_model_named(name, version), version=_version_number(version), stamps=context.stamps
        )
        model_version = route.model_version
        note_usage(request, model=model_version.name, version=model_version.version)
        body = request.data
        if not isinstance(body, oip.InferenceBody):  # no body at all: DRF calls no parser
            raise ParseError("The inference request must be a JSON object.")
        request_id = oip.request_id(body)
        outputs = oip.requested_outputs(body, model_version)
        matrix = oip.to_matrix(oip.read_inputs(body), model_version)
        if (
            any(output.name == oip.PREDICT_PROBA for output in outputs)
            and not runtime.load(model_version).gives_probabilities
        ):
            raise InvalidInput(f"{model_version} gives no predict_proba.", details={"outputs": ["no predict_proba"]})

        def answer(made: fast_path.Made) -> fast_path.Answer:
            content, content_type, headers = oip.encode_response(
                model_version=made.model_version,
                request_id=request_id,
                outputs=outputs,
                result=made.result,
                prediction_id=made.prediction_id,
            )
            return fast_path.Answer(status=200, body=content, content_type=content_type, headers=headers)

        return fast_path.prediction_store(request, route=route, matrix=matrix, field="inputs", render=answer)
