"""The admin: predictions and request logs to browse (read-only, quick on huge tables), and
switching a model's active version."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import RequestLog
from inference.models import ModelVersion, Prediction
from inference.runtime import model_path
from inference.services import model_register

PREDICTIONS = "/admin/inference/prediction/"
REQUEST_LOGS = "/admin/analytics/requestlog/"
MODEL_VERSIONS = "/admin/inference/modelversion/"
IRIS = [5.1, 3.5, 1.4, 0.2]
DIABETES = [0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.0, 0.02, -0.02]


@pytest.fixture
def history(alice, bob, client_for, anon) -> dict:
    """Alice predicts with iris twice, bob with diabetes once; plus a 401 and a 404 in the log."""
    as_alice, as_bob = client_for(alice), client_for(bob)
    for _ in range(2):
        assert (
            as_alice.post("/api/v1/predictions/", {"model": "iris", "features": IRIS}, format="json").status_code == 201
        )
    response = as_bob.post("/api/v1/predictions/", {"model": "diabetes", "features": DIABETES}, format="json")
    assert response.status_code == 201
    assert anon.get("/api/v1/models/").status_code == 401
    assert as_alice.get("/api/v1/predictions/999999/").status_code == 404
    return {"alice": alice, "bob": bob, "bob_prediction": response.json()["id"]}


def changelist(client, url: str, params: str = "") -> tuple:
    """GET a change list; returns (response, the objects it shows, its COUNT queries)."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url + params)
    assert response.status_code == 200, (url + params, response.status_code)
    assert "?e=1" not in response.get("Location", ""), "the admin refused the filter"
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    return response, list(response.context["cl"].result_list), counts


def assert_counts_bounded(counts: list[str]) -> None:
    """Every COUNT runs over a LIMITed subquery: no full count of a table with millions of rows."""
    assert counts, "no count query ran: the check proves nothing"
    for sql in counts:
        assert re.search(r"\bLIMIT\b", sql, re.IGNORECASE), sql


def filter_choices(response) -> list[tuple[str, str]]:
    """(filter title, query string) of every choice of every list filter but "All"."""
    choices = []
    for spec in response.context["cl"].filter_specs:
        for choice in spec.choices(response.context["cl"]):
            if not choice.get("selected") and str(choice["display"]) != "All":
                choices.append((str(spec.title), choice["query_string"]))
    return choices


# --- predictions -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_prediction_list_loads_with_a_bounded_count(admin_client, history):
    _, shown, counts = changelist(admin_client, PREDICTIONS)
    assert {p.model_name for p in shown} == {"iris", "diabetes"}
    assert len(shown) == 3
    assert_counts_bounded(counts)


@pytest.mark.django_db
def test_every_prediction_filter_loads_with_a_bounded_count(admin_client, history):
    response, _, _ = changelist(admin_client, PREDICTIONS)
    choices = filter_choices(response)
    assert {title for title, _ in choices} >= {"model", "version", "user"}
    for _title, query in choices:
        _, _, counts = changelist(admin_client, PREDICTIONS, query)
        assert_counts_bounded(counts)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("?model=iris", {("alice", "iris")}),
        ("?model=diabetes", {("bob", "diabetes")}),
        ("?version=1", {("alice", "iris"), ("bob", "diabetes")}),
        ("?version=2", set()),
        ("?model=iris&version=1", {("alice", "iris")}),
        ("?q=bob", {("bob", "diabetes")}),
        ("?q=diabetes", {("bob", "diabetes")}),
        ("?q=alice", {("alice", "iris")}),
    ],
)
def test_the_prediction_filters_and_search_narrow_the_list(admin_client, history, params, expected):
    _, shown, counts = changelist(admin_client, PREDICTIONS, params)
    assert {(p.user.username, p.model_name) for p in shown} == expected
    assert_counts_bounded(counts)


@pytest.mark.django_db
def test_the_prediction_list_filters_by_user_and_date(admin_client, history):
    bob = history["bob"]
    _, shown, _ = changelist(admin_client, PREDICTIONS, f"?user__id__exact={bob.pk}")
    assert [p.pk for p in shown] == [history["bob_prediction"]]
    today = next(q for title, q in filter_choices(admin_client.get(PREDICTIONS)) if "created_at__gte" in q)
    _, shown, counts = changelist(admin_client, PREDICTIONS, today)
    assert len(shown) == 3
    assert_counts_bounded(counts)


@pytest.mark.django_db
def test_the_prediction_search_finds_by_id(admin_client, history):
    _, shown, _ = changelist(admin_client, PREDICTIONS, f"?q={history['bob_prediction']}")
    assert [p.pk for p in shown] == [history["bob_prediction"]]


@pytest.mark.django_db
def test_show_counts_does_not_count_the_whole_table(admin_client, history):
    # Django's "Show counts" link (?_facets=True) counts every filter choice over the table.
    _, _, counts = changelist(admin_client, PREDICTIONS, "?_facets=True")
    assert_counts_bounded(counts)
    _, _, counts = changelist(admin_client, REQUEST_LOGS, "?_facets=True")
    assert_counts_bounded(counts)


# --- request logs ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_request_log_list_loads_with_a_bounded_count(admin_client, history):
    _, shown, counts = changelist(admin_client, REQUEST_LOGS)
    assert sorted(r.status for r in shown) == [201, 201, 201, 401, 404]
    assert_counts_bounded(counts)


@pytest.mark.django_db
def test_every_request_log_filter_loads_with_a_bounded_count(admin_client, history):
    response, _, _ = changelist(admin_client, REQUEST_LOGS)
    choices = filter_choices(response)
    assert {title for title, _ in choices} >= {"status", "method", "user"}
    for _title, query in choices:
        _, _, counts = changelist(admin_client, REQUEST_LOGS, query)
        assert_counts_bounded(counts)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "statuses"),
    [
        ("?status=2xx", [201, 201, 201]),
        ("?status=4xx", [401, 404]),
        ("?status=401", [401]),
        ("?status=404", [404]),
        ("?status=5xx", []),
        ("?method__exact=GET", [401, 404]),
        ("?auth_method__exact=jwt", [201, 201, 201, 404]),
        ("?q=v1:prediction-list", [201, 201, 201]),
        ("?q=bob", [201]),
        ("?status=4xx&q=alice", [404]),
    ],
)
def test_the_request_log_filters_and_search_narrow_the_list(admin_client, history, params, statuses):
    _, shown, counts = changelist(admin_client, REQUEST_LOGS, params)
    assert sorted(r.status for r in shown) == statuses
    assert_counts_bounded(counts)


@pytest.mark.django_db
def test_the_request_log_filters_by_user_and_date(admin_client, history):
    alice = history["alice"]
    _, shown, _ = changelist(admin_client, REQUEST_LOGS, f"?user__id__exact={alice.pk}")
    assert sorted(r.status for r in shown) == [201, 201, 404]
    today = next(q for title, q in filter_choices(admin_client.get(REQUEST_LOGS)) if "created_at__gte" in q)
    _, shown, counts = changelist(admin_client, REQUEST_LOGS, today)
    assert len(shown) == 5
    assert_counts_bounded(counts)


@pytest.mark.django_db
def test_a_huge_log_is_counted_only_up_to_the_cap(admin_client, history, monkeypatch):
    from project.admin_tools import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "COUNT_CAP", 2)
    response, _, counts = changelist(admin_client, REQUEST_LOGS)
    assert response.context["cl"].result_count == 2  # five rows, counted no further than the cap
    assert any("LIMIT 2" in sql for sql in counts)


# --- read-only ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("changelist_url", [PREDICTIONS, REQUEST_LOGS])
def test_records_cannot_be_added(admin_client, changelist_url):
    assert admin_client.get(changelist_url + "add/").status_code == 403
    assert admin_client.post(changelist_url + "add/", {}).status_code == 403


@pytest.mark.django_db
def test_a_prediction_can_be_viewed_but_not_changed_or_deleted(admin_client, history):
    pk = history["bob_prediction"]
    url = f"{PREDICTIONS}{pk}/change/"
    view = admin_client.get(url)
    assert view.status_code == 200
    assert b'name="_save"' not in view.content
    assert admin_client.post(url, {"n_rows": 99}).status_code == 403
    assert admin_client.post(f"{PREDICTIONS}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert Prediction.objects.get(pk=pk).n_rows == 1


@pytest.mark.django_db
def test_a_request_log_row_can_be_viewed_but_not_changed_or_deleted(admin_client, history):
    row = RequestLog.objects.filter(status=401).get()
    url = f"{REQUEST_LOGS}{row.pk}/change/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"status": 200}).status_code == 403
    assert admin_client.post(f"{REQUEST_LOGS}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert RequestLog.objects.get(pk=row.pk).status == 401


@pytest.mark.django_db
@pytest.mark.parametrize(("changelist_url", "model"), [(PREDICTIONS, Prediction), (REQUEST_LOGS, RequestLog)])
def test_the_bulk_delete_action_is_not_offered(admin_client, history, changelist_url, model):
    response = admin_client.get(changelist_url)
    action_form = response.context.get("action_form")
    offered = [name for name, _ in action_form.fields["action"].choices] if action_form else []
    assert "delete_selected" not in offered
    before = model.objects.count()
    pks = list(model.objects.values_list("pk", flat=True))
    admin_client.post(changelist_url, {"action": "delete_selected", "_selected_action": pks, "post": "yes"})
    assert model.objects.count() == before


@pytest.mark.django_db
def test_staff_without_permissions_cannot_browse(client, staff):
    client.force_login(staff)
    assert client.get(PREDICTIONS).status_code == 403
    assert client.get(REQUEST_LOGS).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    response = client.get(REQUEST_LOGS)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- model versions --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_activate_action_switches_the_active_version(admin_client, alice, client_for):
    v1 = ModelVersion.objects.get(name="iris", is_active=True)
    v2 = model_register(name="iris", source=model_path(v1.file))
    assert not v2.is_active

    response = admin_client.post(MODEL_VERSIONS, {"action": "activate", "_selected_action": [v2.pk]}, follow=True)
    assert response.status_code == 200
    assert "is now active" in response.content.decode()

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.is_active, v2.is_active) == (False, True)
    assert ModelVersion.objects.get(name="diabetes", is_active=True)  # other models untouched
    # The API answers with the new version from the next request on.
    as_alice = client_for(alice)
    assert as_alice.get("/api/v1/models/iris/").json()["version"] == v2.version
    prediction = as_alice.post("/api/v1/predictions/", {"model": "iris", "features": IRIS}, format="json")
    assert prediction.json()["version"] == v2.version


@pytest.mark.django_db
def test_the_model_version_list_loads(admin_client):
    response = admin_client.get(MODEL_VERSIONS)
    assert response.status_code == 200
    shown = {(m.name, m.version) for m in response.context["cl"].result_list}
    assert {("iris", 1), ("diabetes", 1)} <= shown
    assert admin_client.get(MODEL_VERSIONS + "add/").status_code == 403
