"""The Open Inference Protocol's own clients, unchanged, against the running service (the
production server, project/serve.py, on the real PostgreSQL and Redis): tritonclient's HTTP
client with its defaults (binary tensors both ways), and KServe's InferenceRESTClient."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from sklearn.datasets import load_iris
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.utils import InferenceServerException

from accounts.services import api_key_create
from analytics.models import RequestLog
from inference.models import Prediction

IRIS = load_iris().data.astype(np.float32)


@pytest.fixture
def served(gunicorn_server, alice):
    """(host:port, headers with an API key) of a running service."""
    base_url = gunicorn_server(workers=2, production_config=True)
    key = api_key_create(user=alice, name="triton", created_by=None).key
    return base_url.removeprefix("http://"), {"Authorization": f"Bearer {key}"}


class BearerKey(InferenceServerClientPlugin):
    """The README's way to send a key with every call: tritonclient writes its binary framing
    header into a headers dict it is given, so one dict reused across calls carries a stale
    length into the next (the service then reads the JSON cut short: a 400)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request) -> None:
        request.headers["Authorization"] = f"Bearer {self.key}"


def _client(url: str, headers: dict[str, str]) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(url=url, network_timeout=60)
    client.register_plugin(BearerKey(headers["Authorization"].removeprefix("Bearer ")))
    return client


def _rest_predictions(rows: np.ndarray) -> list[int]:
    """What the registry's iris model answers, read back from the stored predictions."""
    from inference import runtime
    from inference.selectors import model_version_get

    return runtime.load(model_version_get(name="iris")).predict(rows.astype(np.float64)).predictions


def test_tritonclient_with_its_defaults(served):
    url, headers = served
    client = _client(url, headers)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    metadata = client.get_model_metadata("iris")
    assert metadata["inputs"][0]["shape"] == [-1, 4] and metadata["outputs"][0]["name"] == "predict"
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]

    for rows in (IRIS[:1], IRIS[::10]):  # one row, then a batch of 15
        tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)  # binary, tritonclient's default
        result = client.infer("iris", [tensor], request_id="r-1")
        assert result.as_numpy("predict").tolist() == _rest_predictions(rows)
        assert result.get_response()["id"] == "r-1"
    # JSON both ways, with the probabilities asked for
    tensor = triton.InferInput("input-0", [3, 4], "FP64")
    tensor.set_data_from_numpy(IRIS[:3].astype(np.float64), binary_data=False)
    outputs = [triton.InferRequestedOutput("predict", binary_data=False), triton.InferRequestedOutput("predict_proba")]
    result = client.infer("iris", [tensor], outputs=outputs)
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (3, 3) and np.allclose(proba.sum(axis=1), 1)
    assert result.as_numpy("predict").tolist() == _rest_predictions(IRIS[:3])
    by_version = client.infer("iris", [tensor], model_version="1")
    assert by_version.get_response()["model_version"] == "1"
    # the key in headers given per call works too (a new dict each call)
    plain = triton.InferenceServerClient(url=url, network_timeout=60)
    tensor.set_data_from_numpy(IRIS[:3].astype(np.float64))
    assert plain.infer("iris", [tensor], headers=dict(headers)).as_numpy("predict").tolist() == _rest_predictions(
        IRIS[:3]
    )

    client.close()
    plain.close()
    assert Prediction.objects.count() == 5
    assert RequestLog.objects.filter(endpoint__in=["v2:model-infer", "v2:version-infer"], status=200).count() == 5


def test_tritonclient_sees_the_services_refusals(served):
    url, headers = served
    client = triton.InferenceServerClient(url=url, network_timeout=60)
    rows = IRIS[:2]
    headers = dict(headers)

    def tensor(shape=(2, 4), datatype="FP32", data=rows):
        made = triton.InferInput("input-0", list(shape), datatype)
        made.set_data_from_numpy(data)
        return made

    cases = {
        "unknown model": (lambda: client.infer("nope", [tensor()], headers=dict(headers)), "404", "nope"),
        "wrong shape": (
            lambda: client.infer("iris", [tensor((2, 3), data=rows[:, :3].copy())], headers=dict(headers)),
            "400",
            "[-1, 4]",
        ),
        "wrong datatype": (
            lambda: client.infer("iris", [tensor(datatype="BOOL", data=rows > 3)], headers=dict(headers)),
            "400",
            "BOOL",
        ),
        "no key": (lambda: client.infer("iris", [tensor()]), "401", "credentials"),
        "bad key": (lambda: client.infer("iris", [tensor()], headers={"Authorization": "Bearer nope"}), "401", ""),
        "unknown model's metadata": (lambda: client.get_model_metadata("nope", headers=headers), "404", "nope"),
    }
    for case, (call, status, words) in cases.items():
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.status() == status, (case, raised.value)
        assert words in raised.value.message(), (case, raised.value.message())
    assert not client.is_model_ready("nope", headers=dict(headers))
    client.close()
    assert not Prediction.objects.exists()


def test_kserves_rest_client(served):
    url, headers = served
    base_url = f"http://{url}"

    async def run() -> tuple:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60, retries=0))
        try:
            ready = await client.is_model_ready(base_url, "iris", headers=headers)
            answers = []
            for binary in (False, True):
                tensor = InferInput("input-0", [3, 4], "FP32")
                tensor.set_data_from_numpy(IRIS[:3], binary_data=binary)
                request = InferRequest(model_name="iris", infer_inputs=[tensor], request_id=f"k-{binary}")
                response = await client.infer(base_url, request, model_name="iris", headers=headers)
                answers.append((response.id, response.outputs[0].name, response.outputs[0].as_numpy().tolist()))
            return ready, answers
        finally:
            await client.close()

    ready, answers = asyncio.run(run())
    assert ready
    expected = _rest_predictions(IRIS[:3])
    assert answers == [("k-False", "predict", expected), ("k-True", "predict", expected)]
