"""The three token routes, and that every other /api/v1/ route wants a valid access token."""

import time
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from project import freshness
from tests.conftest import PASSWORD

TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"


def login(client, username="alice", password=PASSWORD):
    return client.post(TOKEN, {"username": username, "password": password}, format="json")


def test_token_pair_for_right_credentials_works_on_the_api(anon, alice):
    response = login(anon)
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}

    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert anon.get("/api/v1/models/").status_code == 200


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong password"), ("nobody", PASSWORD), ("alice", "")])
def test_wrong_credentials_are_401_in_the_error_shape(anon, alice, username, password):
    response = login(anon, username, password)
    assert response.status_code in (400, 401)
    if password:
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_failed"
    assert "access" not in response.json()


def test_missing_fields_are_400_naming_them(anon, db):
    response = anon.post(TOKEN, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"username", "password"}


def test_inactive_user_gets_no_token(anon, alice):
    alice.is_active = False
    alice.save()
    assert login(anon).status_code == 401


def test_refresh_gives_a_new_access_token_and_rotates_the_refresh_token(anon, alice):
    pair = login(anon).json()
    response = anon.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["access"] != pair["access"]
    assert body["refresh"] != pair["refresh"]
    # The rotated-away refresh token is revoked.
    assert anon.post(REFRESH, {"refresh": pair["refresh"]}, format="json").status_code == 401
    assert anon.post(REFRESH, {"refresh": body["refresh"]}, format="json").status_code == 200


def test_logout_revokes_the_refresh_token(anon, alice):
    pair = login(anon).json()
    response = anon.post(LOGOUT, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code in (200, 205)

    refused = anon.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "authentication_failed"
    # Logging out twice is refused the same way, not a 500.
    assert anon.post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_logout_does_not_touch_other_sessions(anon, alice):
    first, second = login(anon).json(), login(anon).json()
    anon.post(LOGOUT, {"refresh": first["refresh"]}, format="json")
    assert anon.post(REFRESH, {"refresh": second["refresh"]}, format="json").status_code == 200


@pytest.mark.parametrize("route", [REFRESH, LOGOUT])
@pytest.mark.parametrize("token", ["not-a-jwt", "", "a.b.c"])
def test_garbage_refresh_tokens_are_refused_not_500(anon, db, route, token):
    response = anon.post(route, {"refresh": token}, format="json")
    assert response.status_code in (400, 401)
    assert "error" in response.json()


def test_an_access_token_is_not_a_refresh_token(anon, alice):
    pair = login(anon).json()
    assert anon.post(REFRESH, {"refresh": pair["access"]}, format="json").status_code == 401


def test_refresh_for_a_deleted_user_is_401_not_500(anon, alice):
    pair = login(anon).json()
    alice.delete()
    response = anon.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/models/"),
        ("get", "/api/v1/models/iris/"),
        ("get", "/api/v1/predictions/"),
        ("post", "/api/v1/predictions/"),
        ("get", "/api/v1/predictions/1/"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic YWxpY2U6cGFzcw==", "Bearer"])
def test_every_api_route_wants_a_valid_access_token(anon, alice, method, path, header):
    if header:
        anon.credentials(HTTP_AUTHORIZATION=header)
    response = getattr(anon, method)(path, {"features": [1, 2, 3, 4]}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


def test_a_refresh_token_is_not_an_access_token(anon, alice):
    pair = login(anon).json()
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['refresh']}")
    assert anon.get("/api/v1/models/").status_code == 401


def test_a_deactivated_users_access_token_stops_working_on_the_next_request(client_for, alice):
    """Saved as the admin saves it: the freshness stamp moves, and the prediction route's copy
    with it; every other route reads the user on every request."""
    client = client_for(alice)
    predict = {"features": [5.1, 3.5, 1.4, 0.2]}
    assert client.post("/api/v1/predictions/", predict, format="json").status_code == 201
    assert client.get("/api/v1/models/").status_code == 200
    alice.is_active = False
    alice.save()
    assert client.post("/api/v1/predictions/", predict, format="json").status_code == 401
    assert client.get("/api/v1/models/").status_code == 401


def test_a_deactivation_no_signal_hears_of_holds_within_the_freshness_bound(client_for, alice, settings, monkeypatch):
    """A bulk UPDATE (a shell, a script) moves no stamp: FRESHNESS_MAX_AGE_SECONDS bounds how long
    the prediction route's copy of the user may be used; the other routes see it at once."""
    settings.FRESHNESS_MAX_AGE_SECONDS = 60.0
    client = client_for(alice)
    predict = {"features": [5.1, 3.5, 1.4, 0.2]}
    assert client.post("/api/v1/predictions/", predict, format="json").status_code == 201
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    assert client.post("/api/v1/predictions/", predict, format="json").status_code == 201  # the copy, for now
    assert client.get("/api/v1/models/").status_code == 401  # read from the database
    # The bound passes: freshness's clock steps on 61 s (no sleep, so a slow machine cannot pass
    # it early; only that module's clock, so nothing else keeps a time from the future).
    monkeypatch.setattr(freshness, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + 61))
    assert client.post("/api/v1/predictions/", predict, format="json").status_code == 401
