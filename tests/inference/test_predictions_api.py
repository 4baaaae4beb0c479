"""POST/GET /api/v1/predictions/ through HTTP: shapes, bad input, and who sees what."""

from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.utils import timezone

from inference import storage
from inference.models import Prediction
from tests.inference.helpers import IRIS_NAMED, IRIS_ROW, register_tree

PREDICTIONS = "/api/v1/predictions/"


def predict(client, body, **kwargs):
    return client.post(PREDICTIONS, body, format="json", **kwargs)


# --- answers -----------------------------------------------------------------------


def test_one_row_by_list(client_for, alice):
    response = predict(client_for(alice), {"model": "iris", "features": IRIS_ROW})
    assert response.status_code == 201
    body = response.json()
    assert body["model"] == "iris"
    assert body["version"] == 1
    assert body["prediction"] == [0]  # a setosa
    (probabilities,) = body["probabilities"]
    assert set(probabilities) == {"0", "1", "2"}
    assert probabilities["0"] > 0.9
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert body["created_at"].endswith("Z")

    stored = Prediction.objects.get(pk=body["id"])
    assert stored.user == alice
    assert storage.decode_outputs(stored.outputs, [0, 1, 2]) == [0]
    assert storage.decode_matrix(stored.inputs, 4) == [IRIS_ROW]


def test_one_row_by_feature_name_matches_the_list_form(client_for, alice):
    client = client_for(alice)
    by_name = predict(client, {"model": "iris", "features": IRIS_NAMED}).json()
    by_list = predict(client, {"model": "iris", "features": IRIS_ROW}).json()
    assert by_name["prediction"] == by_list["prediction"]
    assert by_name["probabilities"] == by_list["probabilities"]


def test_a_batch_gives_one_answer_per_row_in_order(client_for, alice):
    rows = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3], IRIS_NAMED, [5.9, 2.8, 4.3, 1.3]]
    response = predict(client_for(alice), {"model": "iris", "instances": rows})
    assert response.status_code == 201
    body = response.json()
    assert body["prediction"] == [0, 2, 0, 1]
    assert len(body["probabilities"]) == 4
    assert body["rows"] == 4


def test_a_regressor_answers_numbers_and_no_probabilities(client_for, alice):
    body = predict(client_for(alice), {"model": "diabetes", "instances": [[0.0] * 10, [0.05] * 10]}).json()
    assert all(isinstance(value, float) for value in body["prediction"])
    assert body["prediction"][0] != body["prediction"][1]
    assert body["probabilities"] is None


def test_the_default_model_answers_when_none_is_named(client_for, alice):
    body = predict(client_for(alice), {"features": IRIS_ROW}).json()
    assert body["model"] == settings.DEFAULT_MODEL == "iris"


def test_a_version_other_than_the_active_one(client_for, alice):
    register_tree()  # v2, not active
    client = client_for(alice)
    assert predict(client, {"model": "iris", "features": IRIS_ROW}).json()["version"] == 1
    v2 = predict(client, {"model": "iris", "version": 2, "features": [6.7, 3.0, 5.2, 2.3]}).json()
    assert v2["version"] == 2
    # A depth-1 tree cannot tell versicolor from virginica: it is really the other model.
    assert v2["prediction"] == [1]


def test_batch_at_the_limit_is_accepted(client_for, alice, settings):
    settings.MAX_BATCH_ROWS = 50
    response = predict(client_for(alice), {"instances": [IRIS_ROW] * 50})
    assert response.status_code == 201
    assert len(response.json()["prediction"]) == 50


@pytest.mark.django_db(transaction=True)
def test_the_prediction_is_committed_before_the_201(client_for, alice, committed_demo_models):
    """Another connection sees the row as soon as the answer is back."""
    response = predict(client_for(alice), {"features": IRIS_ROW})
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], password=db["PASSWORD"] or None
    ) as other:
        row = other.execute(
            "SELECT outputs, outputs_head FROM inference_prediction WHERE id = %s", [response.json()["id"]]
        ).fetchone()
    assert row == (b"\x00\x00", [0])  # class index 0 as int16, and the first outputs


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "iris"}, "features"),
        ({}, "features"),
        ({"model": "iris", "features": IRIS_ROW, "instances": [IRIS_ROW]}, "instances"),
        ({"features": [5.1, 3.5, 1.4]}, "features"),
        ({"features": [5.1, 3.5, 1.4, 0.2, 9.9]}, "features"),
        ({"features": []}, "features"),
        ({"features": "5.1,3.5,1.4,0.2"}, "features"),
        ({"features": 5.1}, "features"),
        ({"features": None}, "features"),
        ({"features": [5.1, "3.5", 1.4, 0.2]}, "features"),
        ({"features": [5.1, True, 1.4, 0.2]}, "features"),
        ({"features": [5.1, None, 1.4, 0.2]}, "features"),
        ({"features": [5.1, [3.5], 1.4, 0.2]}, "features"),
        ({"features": [5.1, {"x": 1}, 1.4, 0.2]}, "features"),
        ({"features": {**IRIS_NAMED, "colour": 3}}, "features"),
        ({"features": {"sepal length (cm)": 5.1}}, "features"),
        ({"features": {**IRIS_NAMED, "petal width (cm)": "wide"}}, "features"),
        ({"instances": []}, "instances"),
        ({"instances": IRIS_ROW}, "instances"),
        ({"instances": [IRIS_ROW, [1, 2, 3]]}, "instances"),
        ({"instances": [IRIS_ROW, "row"]}, "instances"),
        ({"instances": [IRIS_ROW, None]}, "instances"),
        ({"instances": {"a": IRIS_ROW}}, "instances"),
        ({"model": ["iris"], "features": IRIS_ROW}, "model"),
        ({"model": "iris", "version": "latest", "features": IRIS_ROW}, "version"),
        ({"model": "iris", "version": 0, "features": IRIS_ROW}, "version"),
        ({"model": "iris", "version": True, "features": IRIS_ROW}, "version"),
    ],
)
def test_bad_input_is_400_naming_the_field(client_for, alice, body, field):
    response = predict(client_for(alice), body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert Prediction.objects.count() == 0


def test_bad_row_in_a_batch_is_named_by_index(client_for, alice):
    rows = [IRIS_ROW] * 3 + [[5.1, 3.5, 1.4]]
    details = predict(client_for(alice), {"instances": rows}).json()["error"]["details"]
    assert details["instances"] == ["row 3: expected 4 features, got 3"]


def test_many_bad_rows_are_reported_briefly(client_for, alice):
    details = predict(client_for(alice), {"instances": [["x"] * 4] * 500}).json()["error"]["details"]
    assert 1 <= len(details["instances"]) <= 10


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(client_for, alice, literal):
    body = '{"model": "iris", "features": [5.1, ' + literal + ", 1.4, 0.2]}"
    response = client_for(alice).post(PREDICTIONS, body, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()


def test_a_batch_over_the_row_limit_is_413(client_for, alice, settings):
    settings.MAX_BATCH_ROWS = 50
    response = predict(client_for(alice), {"instances": [IRIS_ROW] * 51})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "instances" in error["details"]


def test_the_default_batch_limit_is_ten_thousand(client_for, alice):
    assert settings.MAX_BATCH_ROWS == 10_000
    client = client_for(alice)
    assert predict(client, {"instances": [IRIS_ROW] * 10_000}).status_code == 201
    assert predict(client, {"instances": [IRIS_ROW] * 10_001}).status_code == 413


def test_a_body_over_the_size_limit_is_413(client_for, alice, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    response = predict(client_for(alice), {"instances": [IRIS_ROW] * 100})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "nope", "features": IRIS_ROW}, "model"),
        ({"model": "iris", "version": 7, "features": IRIS_ROW}, "version"),
    ],
)
def test_unknown_model_or_version_is_404(client_for, alice, body, field):
    response = predict(client_for(alice), body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert field in response.json()["error"]["details"]


def test_a_model_without_feature_names_refuses_named_features(client_for, alice, settings):
    from inference.models import ModelVersion

    ModelVersion.objects.filter(name="iris").update(feature_names=None)
    response = predict(client_for(alice), {"features": IRIS_NAMED})
    assert response.status_code == 400
    assert "array" in response.json()["error"]["details"]["features"][0]


# --- reading back ------------------------------------------------------------------


def test_read_your_own_prediction_back(client_for, alice):
    client = client_for(alice)
    created = predict(client, {"features": IRIS_ROW}).json()
    response = client.get(f"{PREDICTIONS}{created['id']}/")
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == created["prediction"]
    assert body["inputs"] == [IRIS_ROW]


def test_alice_cannot_see_bobs_predictions(client_for, alice, bob):
    bobs = predict(client_for(bob), {"features": IRIS_ROW}).json()
    alice_client = client_for(alice)
    predict(alice_client, {"features": IRIS_ROW})

    response = alice_client.get(f"{PREDICTIONS}{bobs['id']}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    listed = alice_client.get(PREDICTIONS).json()["results"]
    assert [item["user"] for item in listed] == ["alice"]


def test_staff_see_everyones_predictions(client_for, alice, bob, staff):
    bobs = predict(client_for(bob), {"features": IRIS_ROW}).json()
    predict(client_for(alice), {"features": IRIS_ROW})
    staff_client = client_for(staff)
    assert {item["user"] for item in staff_client.get(PREDICTIONS).json()["results"]} == {"alice", "bob"}
    assert staff_client.get(f"{PREDICTIONS}{bobs['id']}/").status_code == 200


@pytest.mark.parametrize("pk", ["0", "99999", "99999999999999999999999"])
def test_unknown_ids_are_404(client_for, alice, pk):
    response = client_for(alice).get(f"{PREDICTIONS}{pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_is_newest_first_and_pages_by_cursor(client_for, alice):
    client = client_for(alice)
    ids = [predict(client, {"features": IRIS_ROW}).json()["id"] for _ in range(5)]
    first = client.get(PREDICTIONS, {"page_size": 2}).json()
    assert [item["id"] for item in first["results"]] == ids[:-3:-1]
    assert first["previous"] is None
    second = client.get(first["next"]).json()
    assert [item["id"] for item in second["results"]] == [ids[2], ids[1]]
    assert client.get(PREDICTIONS, {"cursor": "garbage"}).status_code == 400


def test_list_filters_by_model_and_period(client_for, alice):
    client = client_for(alice)
    iris = predict(client, {"model": "iris", "features": IRIS_ROW}).json()
    predict(client, {"model": "diabetes", "features": [0.0] * 10})
    Prediction.objects.filter(pk=iris["id"]).update(created_at=timezone.now() - timedelta(days=3))

    by_model = client.get(PREDICTIONS, {"model": "diabetes"}).json()["results"]
    assert [item["model"] for item in by_model] == ["diabetes"]

    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = client.get(PREDICTIONS, {"since": since}).json()["results"]
    assert [item["model"] for item in recent] == ["diabetes"]
    old = client.get(PREDICTIONS, {"until": since}).json()["results"]
    assert [item["id"] for item in old] == [iris["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"since": "2026-02-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        # Valid ISO 8601, but before year 1 once in UTC, or after 9999.
        ({"since": "0001-01-01T01:00:00+01:01"}, "since"),
        ({"until": "9999-12-31T23:00:00-01:00"}, "until"),
        # Given empty is given wrong, not left out (DRF would drop the filter).
        ({"until": ""}, "until"),
        ({"model": ""}, "model"),
        # DRF would take any of these as the default page size.
        ({"page_size": "null"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "-5"}, "page_size"),
        ({"page_size": ""}, "page_size"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "\x15"}, "cursor"),
    ],
)
def test_bad_filters_are_400(client_for, alice, params, field):
    response = client_for(alice).get(PREDICTIONS, params)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_list_runs_a_fixed_number_of_queries(client_for, alice, django_assert_max_num_queries):
    client = client_for(alice)
    for _ in range(20):
        predict(client, {"features": IRIS_ROW})
    # user (JWT), page of predictions with users joined, request-log insert
    with django_assert_max_num_queries(3):
        assert len(client.get(PREDICTIONS).json()["results"]) == 20


def test_a_prediction_costs_a_fixed_number_of_queries_whatever_the_batch(
    client_for, alice, django_assert_max_num_queries
):
    client = client_for(alice)
    predict(client, {"features": IRIS_ROW})  # the model is loaded once, outside the count
    # user (JWT), active model version, prediction insert, request-log insert
    for rows in (1, 1000):
        with django_assert_max_num_queries(4):
            assert predict(client, {"instances": [IRIS_ROW] * rows}).status_code == 201


def test_the_201_says_what_reading_it_back_says(client_for, alice):
    """The create answer is built without the serializer (the hot path): it must not drift."""
    client = client_for(alice)
    created = predict(client, {"instances": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]}).json()
    read_back = client.get(f"{PREDICTIONS}{created['id']}/").json()
    read_back.pop("inputs")
    assert created == read_back


def test_a_prediction_costs_one_redis_round_trip(client_for, alice, monkeypatch):
    """The rate-limit check is the route's only use of Redis, and it is one pipelined round trip."""
    import redis.connection

    client = client_for(alice)
    predict(client, {"features": IRIS_ROW})
    sends = []
    real_send = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(command)
        return real_send(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    response = predict(client, {"features": IRIS_ROW})
    assert response.status_code == 201
    assert response["X-RateLimit-Remaining"]
    assert len(sends) == 1
