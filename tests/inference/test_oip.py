"""The Open Inference Protocol v2 routes (/v2), through Django's test client: the protocol's
tensors in and out, its error shape, and the same records, limits and retries as
/api/v1/predictions/. tests/inference/test_oip_clients.py runs the real clients against it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from sklearn.datasets import load_iris

from accounts.services import api_key_create
from analytics.models import RequestLog
from inference.models import IdempotencyRecord, ModelVersion, Prediction
from tests.inference.helpers import IRIS_ROW

pytestmark = pytest.mark.django_db

IRIS_ROWS = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]
HEADER_LENGTH = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"


def tensor(data, *, shape=None, datatype="FP64", name="input-0"):
    shape = list(np.asarray(data).shape) if shape is None else shape
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def infer(client, body, *, model="iris", **extra):
    return client.post(f"/v2/models/{model}/infer", json.dumps(body), content_type="application/json", **extra)


def binary_body(arrays: list[tuple[str, str, np.ndarray]], **header):
    """A request in the binary tensor data extension: JSON, then each input's raw bytes."""
    inputs, raw = [], b""
    for name, datatype, array in arrays:
        data = array.tobytes()
        inputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(data)},
            }
        )
        raw += data
    document = json.dumps({"inputs": inputs, **header}).encode()
    return document + raw, len(document)


def post_binary(client, body: bytes, header_length: int, model="iris", **extra):
    return client.post(
        f"/v2/models/{model}/infer",
        body,
        content_type="application/octet-stream",
        **{HEADER_LENGTH: str(header_length)},
        **extra,
    )


def read_binary_answer(response):
    """(header, {output name: numpy array}) of a binary answer, as tritonclient reads it."""
    length = int(response["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    buffer, offset, arrays = response.content[length:], 0, {}
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        kind = {"INT64": "<i8", "FP64": "<f8"}[output["datatype"]]
        arrays[output["name"]] = np.frombuffer(buffer[offset : offset + size], dtype=kind).reshape(output["shape"])
        offset += size
    assert offset == len(buffer)
    return header, arrays


# --- the server, and a model's metadata ---------------------------------------------------------


def test_server_metadata_liveness_and_readiness_need_no_credentials(anon):
    assert anon.get("/v2").json() == {"name": "mlserve", "version": "1.0", "extensions": ["binary_tensor_data"]}
    assert anon.get("/v2/health/live").json() == {"live": True}
    assert anon.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_comes_from_the_registry(alice, client_for):
    client = client_for(alice)
    iris = client.get("/v2/models/iris").json()
    assert iris["name"] == "iris" and iris["versions"] == ["1"] and iris["platform"] == "sklearn"
    assert iris["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert iris["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert iris["parameters"]["feature_names"] == load_iris().feature_names
    diabetes = client.get("/v2/models/diabetes/versions/1").json()
    assert diabetes["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert diabetes["inputs"][0]["shape"] == [-1, 10]


def test_model_routes_need_credentials_and_answer_in_the_protocols_error_shape(anon, alice, client_for):
    for path in ("/v2/models/iris", "/v2/models/iris/ready"):
        response = anon.get(path)
        assert response.status_code == 401 and response.json() == {
            "error": "Authentication credentials were not provided."
        }
    response = infer(anon, {"inputs": [tensor([IRIS_ROW])]})
    assert response.status_code == 401 and set(response.json()) == {"error"}
    client = client_for(alice)
    for path, status in [
        ("/v2/models/nope", 404),
        ("/v2/models/iris/versions/7", 404),
        ("/v2/models/iris/versions/0/ready", 404),
        ("/v2/models/iris@nope", 404),
        ("/v2/models/iris/versions/\u00b2", 404),
        ("/v2/models/iris/versions/" + "9" * 5000, 404),
        ("/v2/elsewhere", 404),
    ]:
        response = client.get(path)
        assert response.status_code == status, path
        assert isinstance(response.json()["error"], str), path
    response = client.get("/v2/models/iris/infer")
    assert response.status_code == 405 and isinstance(response.json()["error"], str)
    assert not Prediction.objects.exists()


def test_a_model_whose_file_is_missing_is_not_ready(alice, client_for, settings, tmp_path):
    assert client_for(alice).get("/v2/models/iris/ready").json() == {"name": "iris", "version": "1", "ready": True}
    from inference import runtime

    runtime.forget_loaded_models()
    settings.MODEL_DIR = tmp_path  # the registry's files are not here
    response = client_for(alice).get("/v2/models/iris/ready")
    assert response.status_code == 503 and "missing" in response.json()["error"]


# --- inference -------------------------------------------------------------------------------------


def test_json_tensors_flat_or_nested_answer_what_the_rest_route_answers(alice, client_for):
    client = client_for(alice)
    rest = client.post("/api/v1/predictions/", {"model": "iris", "instances": IRIS_ROWS}, format="json").json()
    nested = infer(
        client,
        {"id": "req-1", "inputs": [tensor(IRIS_ROWS)], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]},
    )
    assert nested.status_code == 200, nested.content
    body = nested.json()
    assert body["id"] == "req-1" and body["model_name"] == "iris" and body["model_version"] == "1"
    predict, proba = body["outputs"]
    assert predict == {"name": "predict", "datatype": "INT64", "shape": [2], "data": rest["prediction"]}
    assert proba["shape"] == [2, 3] and proba["datatype"] == "FP64"
    assert proba["data"] == [p for row in rest["probabilities"] for p in row.values()]
    flat = infer(client, {"inputs": [tensor([value for row in IRIS_ROWS for value in row], shape=[2, 4])]}).json()
    assert [o["name"] for o in flat["outputs"]] == ["predict"]  # predict alone unless more is asked for
    assert flat["outputs"][0]["data"] == rest["prediction"]
    assert "id" not in flat


def test_every_numeric_datatype_is_read(alice, client_for):
    client = client_for(alice)
    rows = [[5, 3, 1, 0], [7, 3, 5, 2]]
    expected = client.post("/api/v1/predictions/", {"model": "iris", "instances": rows}, format="json").json()
    for datatype in ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"):
        response = infer(client, {"inputs": [tensor(rows, datatype=datatype)]})
        assert response.status_code == 200, (datatype, response.content)
        assert response.json()["outputs"][0]["data"] == expected["prediction"], datatype


def test_binary_inputs_and_outputs(alice, client_for):
    client = client_for(alice)
    rows = np.array(IRIS_ROWS, dtype=np.float32)
    body, length = binary_body(
        [("input-0", "FP32", rows)],
        outputs=[
            {"name": "predict", "parameters": {"binary_data": True}},
            {"name": "predict_proba", "parameters": {"binary_data": True}},
        ],
    )
    response = post_binary(client, body, length)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/octet-stream"
    header, arrays = read_binary_answer(response)
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 16
    expected = client.post(
        "/api/v1/predictions/", {"model": "iris", "instances": rows.astype(np.float64).tolist()}, format="json"
    ).json()
    assert arrays["predict"].tolist() == expected["prediction"]
    assert arrays["predict_proba"].tolist() == [list(row.values()) for row in expected["probabilities"]]
    # binary_data_output asks for every output as bytes; an output may still ask for JSON
    body, length = binary_body([("x", "FP64", rows.astype(np.float64))], parameters={"binary_data_output": True})
    header, arrays = read_binary_answer(post_binary(client, body, length))
    assert arrays["predict"].tolist() == expected["prediction"]
    body, length = binary_body(
        [("x", "FP32", rows)],
        parameters={"binary_data_output": True},
        outputs=[{"name": "predict", "parameters": {"binary_data": False}}],
    )
    response = post_binary(client, body, length)
    assert "Inference-Header-Content-Length" not in response
    assert response.json()["outputs"][0]["data"] == expected["prediction"]


def test_one_input_per_feature_as_mlservers_pandas_codec_sends(alice, client_for):
    client = client_for(alice)
    names = load_iris().feature_names
    columns = list(zip(*IRIS_ROWS, strict=True))
    inputs = [tensor(list(column), name=name) for name, column in zip(reversed(names), reversed(columns), strict=True)]
    expected = client.post("/api/v1/predictions/", {"model": "iris", "instances": IRIS_ROWS}, format="json").json()
    response = infer(client, {"inputs": inputs})
    assert response.status_code == 200, response.content
    assert response.json()["outputs"][0]["data"] == expected["prediction"]
    response = infer(client, {"inputs": inputs[:3]})
    assert response.status_code == 400 and "missing" in response.json()["error"]


def test_a_regressor_answers_fp64(alice, client_for):
    client = client_for(alice)
    row = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.02]
    expected = client.post("/api/v1/predictions/", {"model": "diabetes", "features": row}, format="json").json()
    body = infer(client, {"inputs": [tensor([row])]}, model="diabetes").json()
    assert body["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [1], "data": expected["prediction"]}]


def test_an_inference_is_stored_and_logged_like_a_prediction(alice, client_for):
    client = client_for(alice)
    body = infer(client, {"inputs": [tensor(IRIS_ROWS)]}).json()
    prediction_id = body["parameters"]["prediction_id"]
    stored = client.get(f"/api/v1/predictions/{prediction_id}/").json()
    assert stored["model"] == "iris" and stored["version"] == 1 and stored["rows"] == 2
    assert stored["prediction"] == body["outputs"][0]["data"] and stored["inputs"] == IRIS_ROWS
    log = RequestLog.objects.get(endpoint="v2:model-infer")
    assert (log.status, log.model, log.model_version, log.rows, log.user_id) == (200, "iris", 1, 2, alice.pk)
    assert log.response_bytes > 0


def test_an_api_key_works_as_the_clients_send_it(alice, client_for):
    key = api_key_create(user=alice, name="triton", created_by=None).key
    client = client_for(None)
    response = infer(client, {"inputs": [tensor([IRIS_ROW])]}, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert RequestLog.objects.get(endpoint="v2:model-infer").auth_method == "api_key"


def test_versions_by_number_or_label(alice, client_for, staff):
    from tests.inference.helpers import register_tree

    tree = register_tree()  # version 2, not active
    client = client_for(alice)
    assert infer(client, {"inputs": [tensor([IRIS_ROW])]}, model="iris/versions/2").json()["model_version"] == "2"
    assert infer(client, {"inputs": [tensor([IRIS_ROW])]}).json()["model_version"] == "1"
    client_for(staff).put("/api/v1/models/iris/aliases/staging/", {"version": tree.version}, format="json")
    for model in ("iris/versions/staging", "iris@staging"):
        response = infer(client, {"inputs": [tensor([IRIS_ROW])]}, model=model)
        assert response.json()["model_version"] == "2", model
    response = infer(client, {"inputs": [tensor([IRIS_ROW])]}, model="iris@staging/versions/1")
    assert response.status_code == 400 and set(response.json()) == {"error"}


# --- bad input: a 400 (413 for a batch over the limit) in the protocol's shape, nothing stored --------


def _bad_bodies():
    good = tensor([IRIS_ROW])
    return {
        "inputs missing": {},
        "inputs empty": {"inputs": []},
        "inputs not an array": {"inputs": good},
        "an input not an object": {"inputs": [[5.1]]},
        "no name": {"inputs": [{**good, "name": ""}]},
        "unknown datatype": {"inputs": [{**good, "datatype": "FP128"}]},
        "BYTES": {"inputs": [{**good, "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]},
        "BOOL": {"inputs": [{**good, "datatype": "BOOL", "data": [[True, False, True, False]]}]},
        "shape not an array": {"inputs": [{**good, "shape": "1x4"}]},
        "negative shape": {"inputs": [{**good, "shape": [-1, 4]}]},
        "boolean in shape": {"inputs": [{**good, "shape": [True, 4]}]},
        "data shorter than shape": {"inputs": [{**good, "shape": [2, 4]}]},
        "strings in FP data": {"inputs": [{**good, "data": [["5.1", 3.5, 1.4, 0.2]]}]},
        "null in FP data": {"inputs": [{**good, "data": [[None, 3.5, 1.4, 0.2]]}]},
        "booleans in FP data": {"inputs": [{**good, "data": [[True, 3.5, 1.4, 0.2]]}]},
        "fractions in INT data": {"inputs": [{**good, "datatype": "INT32"}]},
        "INT8 out of range": {"inputs": [{**good, "datatype": "INT8", "data": [[300, 1, 1, 1]]}]},
        "UINT8 negative": {"inputs": [{**good, "datatype": "UINT8", "data": [[-1, 1, 1, 1]]}]},
        "FP32 out of range": {"inputs": [{**good, "datatype": "FP32", "data": [[1e39, 1, 1, 1]]}]},
        "FP16 out of range": {"inputs": [{**good, "datatype": "FP16", "data": [[70000.0, 1, 1, 1]]}]},
        "wrong feature count": {"inputs": [tensor([[5.1, 3.5, 1.4]])]},
        "one dimension": {"inputs": [tensor(IRIS_ROW)]},
        "three dimensions": {"inputs": [tensor([[IRIS_ROW]])]},
        "no rows": {"inputs": [tensor([], shape=[0, 4])]},
        "two tensors": {"inputs": [good, {**good, "name": "second"}]},
        "the same name twice": {
            "inputs": [{**good, "name": "sepal length (cm)"}, {**good, "name": "sepal length (cm)"}]
        },
        "data and binary": {"inputs": [{**good, "parameters": {"binary_data_size": 32}}]},
        "parameters not an object": {"inputs": [{**good, "parameters": [1]}]},
        "unknown output": {"inputs": [good], "outputs": [{"name": "predict_log_proba"}]},
        "output not an object": {"inputs": [good], "outputs": ["predict"]},
        "outputs empty": {"inputs": [good], "outputs": []},
        "the same output twice": {"inputs": [good], "outputs": [{"name": "predict"}, {"name": "predict"}]},
        "id not a string": {"id": 7, "inputs": [good]},
        "request parameters not an object": {"inputs": [good], "parameters": "binary"},
        "request parameters an empty array": {"inputs": [good], "parameters": []},
        "input parameters false": {"inputs": [{**good, "parameters": False}]},
        "ragged data": {"inputs": [tensor([[5.1, 3.5, 1.4], [6.7, 3.0, 5.2, 2.3, 0.1]], shape=[2, 4])]},
        "mixed nesting": {"inputs": [tensor([5.1, [3.5, 1.4], 0.2, 1.0], shape=[1, 4])]},
        "nested other than the shape": {"inputs": [tensor([[5.1, 3.5], [1.4, 0.2]], shape=[1, 4])]},
    }


@pytest.mark.parametrize("case", list(_bad_bodies()))
def test_a_malformed_request_is_a_400_naming_the_problem(alice, client_for, case):
    response = infer(client_for(alice), _bad_bodies()[case])
    assert response.status_code == 400, (case, response.content)
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], case
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    "case",
    [
        "no body",
        "header length in other digits",
        "not JSON",
        "JSON not an object",
        "NaN",
        "header length past the body",
        "header length not a number",
        "binary size past the data",
        "binary size not the shape's",
        "extra bytes",
        "binary NaN",
        "compressed",
    ],
)
def test_a_malformed_body_is_a_400(alice, client_for, case):
    client = client_for(alice)
    rows = np.array([IRIS_ROW], dtype=np.float64)
    body, length = binary_body([("x", "FP64", rows)])
    headers = {HEADER_LENGTH: str(length)}
    if case == "no body":
        body, headers = b"", {}
    elif case == "header length in other digits":
        headers = {HEADER_LENGTH: "\u00b2"}  # str.isdigit() says yes; int() says no
    elif case == "not JSON":
        body, headers = b"{inputs", {}
    elif case == "JSON not an object":
        body, headers = b"[1, 2]", {}
    elif case == "NaN":
        body, headers = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [NaN, 1, 1, 1]}]}', {}
    elif case == "header length past the body":
        headers = {HEADER_LENGTH: str(len(body) + 1)}
    elif case == "header length not a number":
        headers = {HEADER_LENGTH: "-5"}
    elif case == "binary size past the data":
        body = body[:-8]
    elif case == "binary size not the shape's":
        body, length = binary_body([("x", "FP32", rows.astype(np.float32))])
        body = body.replace(b'"datatype": "FP32"', b'"datatype": "FP64"')  # 16 bytes, where FP64 needs 32
        headers = {HEADER_LENGTH: str(length)}
    elif case == "extra bytes":
        body += b"\x00" * 8
    elif case == "binary NaN":
        body = body[:length] + struct.pack("<4d", float("nan"), 1, 1, 1)
    elif case == "compressed":
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    response = client.post("/v2/models/iris/infer", body, content_type="application/octet-stream", **headers)
    assert response.status_code in (400, 415), (case, response.content)
    assert response.status_code == (415 if case == "compressed" else 400), case
    assert isinstance(response.json()["error"], str)
    assert not Prediction.objects.exists()


def test_predict_proba_of_a_regressor_is_a_400(alice, client_for):
    body = {"inputs": [tensor([[0.0] * 10])], "outputs": [{"name": "predict_proba"}]}
    response = infer(client_for(alice), body, model="diabetes")
    assert response.status_code == 400 and "predict_proba" in response.json()["error"]


def test_a_batch_over_the_limit_is_413(alice, client_for, settings):
    settings.MAX_BATCH_ROWS = 3
    response = infer(client_for(alice), {"inputs": [tensor([IRIS_ROW] * 4)]})
    assert response.status_code == 413 and "limit is 3" in response.json()["error"]
    response = infer(client_for(alice), {"inputs": [tensor([1.0], shape=[10**9, 10**9])]})
    assert response.status_code == 413
    assert not Prediction.objects.exists()


def test_the_rate_limit_is_the_prediction_routes_own(alice, client_for, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "predictions": "3/h"}
    client = client_for(alice)
    assert client.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json").status_code == 201
    assert [infer(client, {"inputs": [tensor([IRIS_ROW])]}).status_code for _ in range(2)] == [200, 200]
    refused = infer(client, {"inputs": [tensor([IRIS_ROW])]})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert set(refused.json()) == {"error"}


def test_a_retry_with_the_same_idempotency_key_gets_the_same_bytes(alice, client_for):
    client = client_for(alice)
    body, length = binary_body([("x", "FP64", np.array(IRIS_ROWS))], parameters={"binary_data_output": True})
    first = post_binary(client, body, length, HTTP_IDEMPOTENCY_KEY="oip-1")
    again = post_binary(client, body, length, HTTP_IDEMPOTENCY_KEY="oip-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content and again.status_code == 200
    assert again["Inference-Header-Content-Length"] == first["Inference-Header-Content-Length"]
    assert again["Content-Type"] == "application/octet-stream"
    assert Prediction.objects.count() == 1
    other, other_length = binary_body([("x", "FP64", np.array([IRIS_ROW]))])
    assert post_binary(client, other, other_length, HTTP_IDEMPOTENCY_KEY="oip-1").status_code == 422
    # the model named in the path is part of what the key stands for
    elsewhere = client.post(
        "/v2/models/iris/versions/1/infer",
        body,
        content_type="application/octet-stream",
        **{HEADER_LENGTH: str(length)},
        HTTP_IDEMPOTENCY_KEY="oip-1",
    )
    assert elsewhere.status_code == 422
    assert IdempotencyRecord.objects.get(key="oip-1").status == 200


def test_class_labels_that_are_strings_are_bytes(alice, client_for, tmp_path):
    import joblib
    from sklearn.linear_model import LogisticRegression

    from inference.services import model_register

    data = load_iris()
    labels = np.array(data.target_names)[data.target]
    path = tmp_path / "named.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(data.data, labels), path)
    model_register(name="iris-named", source=path)
    client = client_for(alice)
    metadata = client.get("/v2/models/iris-named").json()
    assert metadata["outputs"][0]["datatype"] == "BYTES"
    body = infer(client, {"inputs": [tensor(IRIS_ROWS)]}, model="iris-named").json()
    assert body["outputs"][0]["data"] == ["setosa", "virginica"]
    raw, length = binary_body([("x", "FP64", np.array(IRIS_ROWS))], parameters={"binary_data_output": True})
    response = post_binary(client, raw, length, model="iris-named")
    header_length = int(response["Inference-Header-Content-Length"])
    assert response.content[header_length:] == b"\x06\x00\x00\x00setosa\x09\x00\x00\x00virginica"
    assert ModelVersion.objects.filter(name="iris-named").exists()
