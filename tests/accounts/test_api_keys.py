"""API keys: made by staff, shown once, stored as a hash, usable as X-API-Key or Bearer."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create
from analytics.models import RequestLog
from tests.inference.helpers import IRIS_ROW

KEYS = "/api/v1/api-keys/"


def make_key(client_for, staff, **body):
    response = client_for(staff).post(KEYS, {"user": "alice", "name": "ci", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_the_whole_life_of_a_key(client_for, staff, alice, anon):
    created = make_key(client_for, staff)
    key = created["key"]
    assert key.startswith("mlsk_")
    assert created["prefix"] in key
    assert created["user"] == alice.pk
    assert created["revoked"] is False
    assert {"id", "name", "created_at", "expires_at"} <= set(created)

    # Works once shown, as either header, and acts as its owner.
    anon.credentials(HTTP_X_API_KEY=key)
    response = anon.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json")
    assert response.status_code == 201
    assert response.json()["user"] == "alice"
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert anon.get("/api/v1/models/").status_code == 200

    # Only a hash is in the database: the key appears in no column of any row.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        assert not any(key in str(value) for row in cursor.fetchall() for value in row)
    assert ApiKey.objects.get(pk=created["id"]).key_hash != key

    # Never shown again.
    listed = client_for(staff).get(KEYS).json()["results"]
    assert all("key" not in item for item in listed)
    assert key not in str(client_for(staff).get(f"{KEYS}{created['id']}/").content)

    # Revoked: refused from the very next request.
    revoked = client_for(staff).post(f"{KEYS}{created['id']}/revoke/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    response = anon.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_requests_made_with_a_key_are_logged_with_it(client_for, staff, alice, anon):
    created = make_key(client_for, staff)
    anon.credentials(HTTP_X_API_KEY=created["key"])
    anon.get("/api/v1/models/")
    row = RequestLog.objects.latest("id")
    assert row.auth_method == "api_key"
    assert row.api_key_id == created["id"]
    assert row.user.username == "alice"


def test_last_used_is_recorded_without_a_write_per_request(client_for, staff, alice, anon):
    created = make_key(client_for, staff)
    anon.credentials(HTTP_X_API_KEY=created["key"])
    anon.get("/api/v1/models/")
    first_use = ApiKey.objects.get(pk=created["id"]).last_used_at
    assert first_use is not None
    anon.get("/api/v1/models/")
    assert ApiKey.objects.get(pk=created["id"]).last_used_at == first_use


def test_an_expired_key_is_401(alice, anon):
    created = api_key_create(user=alice, name="old", created_by=None, expires_at=timezone.now() + timedelta(seconds=1))
    ApiKey.objects.filter(pk=created.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.get("/api/v1/models/").status_code == 401


def test_a_key_of_an_inactive_user_is_401(alice, anon):
    created = api_key_create(user=alice, name="k", created_by=None)
    alice.is_active = False
    alice.save()
    anon.credentials(HTTP_X_API_KEY=created.key)
    assert anon.get("/api/v1/models/").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_API_KEY": "mlsk_nope"},
        {"HTTP_X_API_KEY": ""},
        {"HTTP_X_API_KEY": "mlsk_abcdefgh_" + "x" * 40},
        {"HTTP_AUTHORIZATION": "Bearer mlsk_abcdefgh_" + "x" * 40},
    ],
)
def test_unknown_keys_are_401(anon, db, headers):
    anon.credentials(**headers)
    response = anon.get("/api/v1/models/")
    assert response.status_code == 401
    assert "error" in response.json()


def test_a_right_prefix_with_a_wrong_secret_is_401(alice, anon):
    created = api_key_create(user=alice, name="k", created_by=None)
    anon.credentials(HTTP_X_API_KEY=created.key[:-1] + ("A" if created.key[-1] != "A" else "B"))
    assert anon.get("/api/v1/models/").status_code == 401


def test_non_staff_cannot_create_or_revoke(client_for, alice, bob, staff):
    response = client_for(alice).post(KEYS, {"user": "alice", "name": "mine"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    created = make_key(client_for, staff, user="alice")
    assert client_for(alice).post(f"{KEYS}{created['id']}/revoke/").status_code == 403
    assert not ApiKey.objects.get(pk=created["id"]).revoked


def test_non_staff_see_only_their_own_keys(client_for, alice, bob, staff):
    alices = make_key(client_for, staff, user="alice")
    bobs = make_key(client_for, staff, user=bob.pk)
    listed = client_for(alice).get(KEYS).json()["results"]
    assert [item["id"] for item in listed] == [alices["id"]]
    assert all("key" not in item for item in listed)
    assert client_for(alice).get(f"{KEYS}{bobs['id']}/").status_code == 404
    assert {item["id"] for item in client_for(staff).get(KEYS).json()["results"]} == {alices["id"], bobs["id"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "nobody", "name": "x"}, "user"),
        ({"user": 999999, "name": "x"}, "user"),
        ({"user": True, "name": "x"}, "user"),
        ({"user": None, "name": "x"}, "user"),
        ({"user": "alice"}, "name"),
        ({"user": "alice", "name": "x" * 101}, "name"),
        ({"user": "alice", "name": "x", "rate": "lots"}, "rate"),
        ({"user": "alice", "name": "x", "rate": "0/m"}, "rate"),
        ({"user": "alice", "name": "x", "rate": "5/0m"}, "rate"),
        ({"user": "alice", "name": "x", "rate": "1/99999999999999999d"}, "rate"),
        ({"user": "staff", "name": "x"}, "user"),
        ({"user": "alice", "name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"user": "alice", "name": "x", "expires_at": "soon"}, "expires_at"),
    ],
)
def test_bad_key_requests_are_400(client_for, staff, alice, body, field):
    response = client_for(staff).post(KEYS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert ApiKey.objects.count() == 0


@pytest.mark.parametrize("pk", ["999999", "99999999999999999999"])
def test_revoking_an_unknown_key_is_404(client_for, staff, pk):
    assert client_for(staff).post(f"{KEYS}{pk}/revoke/").status_code == 404


def test_a_jwt_still_works_beside_keys(client_for, alice):
    assert client_for(alice).get("/api/v1/models/").status_code == 200


def test_admin_shows_the_key_once_after_saving(client, staff, alice):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    response = client.post(
        "/admin/accounts/apikey/add/",
        {"user": alice.pk, "name": "from admin", "rate": "", "expires_at": ""},
        follow=True,
    )
    assert response.status_code == 200
    api_key = ApiKey.objects.get(name="from admin")
    shown = [str(m) for m in response.context["messages"]]
    (message,) = [m for m in shown if "mlsk_" in m]
    key = message.split(" is ")[1].split(" ")[0]
    assert key.startswith(f"mlsk_{api_key.prefix}_")
    # And it is not on the key's page afterwards.
    page = client.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    assert key not in page.content.decode()


def test_a_staff_api_key_cannot_manage_keys(client_for, staff, alice, anon):
    staff.is_superuser = True
    staff.save()
    created = make_key(client_for, staff, user="staff")
    anon.credentials(HTTP_X_API_KEY=created["key"])
    assert anon.get(KEYS).status_code == 200  # reading is fine
    response = anon.post(KEYS, {"user": "alice", "name": "minted"}, format="json")
    assert response.status_code == 403
    assert anon.post(f"{KEYS}{created['id']}/revoke/").status_code == 403


def test_only_a_superuser_makes_keys_for_staff(client_for, staff, db):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", password="x" * 20)
    assert client_for(staff).post(KEYS, {"user": "staff", "name": "k"}, format="json").status_code == 400
    assert client_for(root).post(KEYS, {"user": "staff", "name": "k"}, format="json").status_code == 201


# --- the same rule in the admin, and no staff account minting itself more power ---------


@pytest.fixture
def key_clerk(db):
    """Staff who may add keys and edit users in the admin, but is no superuser."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    clerk = get_user_model().objects.create_user("clerk", password="x" * 20, is_staff=True)
    codenames = ["add_apikey", "view_apikey", "change_apikey", "change_user", "view_user", "change_group"]
    clerk.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return clerk


@pytest.fixture
def root(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", password="x" * 20)


def _admin_add_key(client, owner):
    return client.post(
        "/admin/accounts/apikey/add/", {"user": owner.pk, "name": "minted", "rate": "", "expires_at": ""}
    )


def test_staff_cannot_mint_a_key_for_a_superuser_or_staff_in_the_admin(client, key_clerk, root, staff, alice):
    client.force_login(key_clerk)
    for owner in (root, staff, key_clerk):
        response = _admin_add_key(client, owner)
        assert response.status_code == 200  # the form again, with the API's own words
        assert "Only a superuser can make keys for staff accounts." in response.content.decode()
    assert not ApiKey.objects.filter(name="minted").exists()
    assert _admin_add_key(client, alice).status_code == 302
    assert ApiKey.objects.get(name="minted").user == alice


def test_the_api_and_the_admin_refuse_the_same_owners(client, client_for, key_clerk, root, alice):
    """The same rule (accounts.policies) in both: an inactive owner is refused by both too."""
    alice.is_active = False
    alice.save()
    client.force_login(key_clerk)
    api = client_for(key_clerk)
    for owner in (root, alice):
        assert _admin_add_key(client, owner).status_code == 200
        assert api.post(KEYS, {"user": owner.pk, "name": "minted"}, format="json").status_code == 400
    assert not ApiKey.objects.exists()


def test_staff_cannot_make_themselves_superuser_in_the_user_admin(client, key_clerk, root, alice):
    client.force_login(key_clerk)
    for account in (key_clerk, root):  # their own, and one with more power: to view, not to change
        page = f"/admin/auth/user/{account.pk}/change/"
        assert client.get(page).context["has_change_permission"] is False
        assert client.post(page, {"username": account.username, "is_superuser": "on"}).status_code == 403
        assert client.get(f"/admin/auth/user/{account.pk}/password/").status_code == 403
    key_clerk.refresh_from_db()
    assert key_clerk.is_superuser is False
    assert client.get("/admin/auth/group/add/").status_code == 403


def test_staff_edit_ordinary_accounts_but_not_their_power(client, key_clerk, alice):
    client.force_login(key_clerk)
    page = f"/admin/auth/user/{alice.pk}/change/"
    response = client.get(page)
    assert response.status_code == 200
    readonly = set(response.context["adminform"].readonly_fields)
    assert {"is_staff", "is_superuser", "groups", "user_permissions"} <= readonly
    data = {
        "username": "alice",
        "first_name": "Alice",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    assert client.post(page, data).status_code == 302
    alice.refresh_from_db()
    assert alice.first_name == "Alice"
    assert (alice.is_staff, alice.is_superuser) == (False, False)
