"""Every stored prediction reads back, whatever numbers it holds, and reading back costs what the
answer is worth: a list page never loads a batch, and a batch's detail is passed on as stored."""

from contextlib import contextmanager

import pytest
from django.db import connection

from tests.inference.helpers import IRIS_ROW, register_tree

PREDICTIONS = "/api/v1/predictions/"


@contextmanager
def statements():
    """The SQL this connection runs meanwhile (Django resets its own query log per request)."""
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def _read_back(client, answer):
    detail = client.get(f"{PREDICTIONS}{answer['id']}/")
    assert detail.status_code == 200, detail.content[:300]
    return detail.json()


def _listed(client, answer):
    listing = client.get(PREDICTIONS)
    assert listing.status_code == 200, listing.content[:300]
    (item,) = [item for item in listing.json()["results"] if item["id"] == answer["id"]]
    return item


def test_huge_and_tiny_inputs_read_back_as_sent(client_for, alice, staff):
    """The largest and smallest doubles a row may hold, and 1e20 (which jsonb kept as the exact
    numeric 100000000000000000000, an integer too wide to render), read back as they were sent."""
    register_tree("extremes")
    rows = [
        [1e20, 1, 1, 1],
        [1.7976931348623157e308, 5e-324, -1e20, 12345678901234567890],
        [-1.7976931348623157e308, 2.2250738585072014e-308, 0.1, 1e-300],
    ]
    client = client_for(alice)
    answer = client.post(PREDICTIONS, {"model": "extremes", "instances": rows}, format="json").json()
    # As the model read them: doubles (12345678901234567890 is the double nearest it).
    assert _read_back(client, answer)["inputs"] == [[float(value) for value in row] for row in rows]
    assert _listed(client, answer)["first_outputs"] == answer["prediction"]
    assert _listed(client_for(staff), answer)["first_outputs"] == answer["prediction"]


def test_huge_outputs_read_back(client_for, alice, staff):
    client = client_for(alice)
    answer = client.post(PREDICTIONS, {"model": "diabetes", "features": [1e18] * 10}, format="json").json()
    assert answer["prediction"][0] > 2**64  # wider than any 64-bit integer once jsonb has it
    assert _read_back(client, answer)["prediction"] == answer["prediction"]
    assert _listed(client, answer)["first_outputs"] == answer["prediction"]
    assert _listed(client_for(staff), answer)["first_outputs"] == answer["prediction"]


def test_tiny_probabilities_read_back(client_for, alice):
    client = client_for(alice)
    rows = [[5.1, 3.5, 1.4, width] for width in (10, 100, 200)]
    answer = client.post(PREDICTIONS, {"model": "iris", "instances": rows}, format="json").json()
    assert 0 < min(answer["probabilities"][2].values()) < 1e-250
    assert _read_back(client, answer)["probabilities"] == answer["probabilities"]


@pytest.mark.parametrize("rows", [20, 5000])
def test_a_list_page_costs_the_same_whatever_the_batch_size(client_for, alice, rows):
    client = client_for(alice)
    for _ in range(3):
        answer = client.post(PREDICTIONS, {"model": "iris", "instances": [IRIS_ROW] * rows}, format="json")
        assert answer.status_code == 201
    with statements() as queries:
        listing = client.get(PREDICTIONS)
    assert listing.status_code == 200
    items = listing.json()["results"]
    assert [item["rows"] for item in items] == [rows] * 3
    assert [len(item["first_outputs"]) for item in items] == [10] * 3
    assert client.get(items[0]["url"]).json()["id"] == items[0]["id"]
    # Three summaries, a few hundred bytes each, for 20-row batches and 5,000-row ones alike.
    assert len(listing.content) < 1500
    (page_query,) = [sql for sql in queries if "inference_prediction" in sql]
    selected = page_query.split(" FROM ")[0]
    for column in ('"inputs"', '"outputs"', '"probabilities"'):
        assert column not in selected


def test_a_whole_batch_reads_back_as_it_was_answered(client_for, alice):
    client = client_for(alice)
    rows = [[4.0 + (i % 40) / 10, 2.0 + (i % 23) / 10, 1.0 + (i % 59) / 10, (i % 25) / 10] for i in range(10_000)]
    answer = client.post(PREDICTIONS, {"model": "iris", "instances": rows}, format="json").json()
    detail = _read_back(client, answer)
    assert detail["inputs"] == rows
    assert detail["prediction"] == answer["prediction"]
    assert detail["probabilities"] == answer["probabilities"]
    assert {key: detail[key] for key in ("id", "model", "version", "rows", "user", "created_at")} == {
        key: answer[key] for key in ("id", "model", "version", "rows", "user", "created_at")
    }


def test_the_admins_prediction_list_loads_no_batch(client_for, alice, staff, client):
    staff.is_superuser = True
    staff.save()
    client_for(alice).post(PREDICTIONS, {"model": "iris", "instances": [IRIS_ROW] * 50}, format="json")
    client.force_login(staff)
    with statements() as queries:
        assert client.get("/admin/inference/prediction/").status_code == 200
    pages = [sql for sql in queries if 'FROM "inference_prediction"' in sql and "COUNT" not in sql]
    assert pages
    for sql in pages:
        for column in ("inputs", "outputs", "probabilities"):
            assert f'"inference_prediction"."{column}"' not in sql
