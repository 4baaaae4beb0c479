from tests.inference.helpers import register_tree

MODELS = "/api/v1/models/"


def test_list_shows_each_model_with_its_active_version(client_for, alice):
    response = client_for(alice).get(MODELS)
    assert response.status_code == 200
    body = response.json()
    assert {"results", "next", "previous"} <= set(body)
    by_name = {item["name"]: item for item in body["results"]}
    assert set(by_name) == {"iris", "diabetes"}

    iris = by_name["iris"]
    assert iris["task"] == "classification"
    assert iris["version"] == 1
    assert iris["versions"] == [1]
    assert iris["n_features"] == 4
    assert iris["feature_names"][0] == "sepal length (cm)"
    assert iris["classes"] == [0, 1, 2]

    diabetes = by_name["diabetes"]
    assert diabetes["task"] == "regression"
    assert diabetes["n_features"] == 10
    assert diabetes["classes"] is None


def test_detail_by_name_lists_every_version(client_for, alice):
    register_tree()
    register_tree(activate=True)
    body = client_for(alice).get(f"{MODELS}iris/").json()
    assert body["version"] == 3
    assert body["versions"] == [1, 2, 3]


def test_unknown_model_is_404_in_the_error_shape(client_for, alice):
    response = client_for(alice).get(f"{MODELS}no-such-model/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_pages(client_for, alice):
    response = client_for(alice).get(MODELS, {"page_size": 1})
    assert len(response.json()["results"]) == 1
    assert response.json()["next"]
    assert client_for(alice).get(MODELS, {"page": 99}).status_code == 400
    # A page size past the most a page holds is that most, not an error.
    assert client_for(alice).get(MODELS, {"page_size": 100_000}).json()["next"] is None
    assert client_for(alice).get(MODELS, {"page": "last", "page_size": 1}).json()["previous"]
    for bad in ({"page": ""}, {"page": "0"}, {"page": "one"}, {"page_size": "null"}):
        response = client_for(alice).get(MODELS, bad)
        assert response.status_code == 400, bad
        assert set(response.json()["error"]["details"]) == set(bad), bad
