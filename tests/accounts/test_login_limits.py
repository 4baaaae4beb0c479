"""Password guessing is limited per (username, address), per address and, far above those, per
username; no stranger can lock an owner out, and the counts hold under concurrency."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import PASSWORD

TOKEN = "/api/v1/auth/token/"


@pytest.fixture
def limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "login-ip": "1000/m"}  # only failures count here

    def set_limits(**overrides: str) -> None:
        settings.LOGIN_FAILURE_LIMITS = {**settings.LOGIN_FAILURE_LIMITS, **overrides}

    return set_limits


def login(client, username: str, password: str, address: str):
    return client.post(TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


def test_guessing_from_one_address_does_not_lock_the_owner_out(anon, alice, limits):
    """Ten wrong passwords used to make the owner's right one a 429 from anywhere."""
    codes = [login(anon, "alice", f"guess {n}", "203.0.113.66").status_code for n in range(12)]
    assert codes == [401] * 5 + [429] * 7
    # The guesser's address may not go on, even with the right password...
    refused = login(anon, "alice", PASSWORD, "203.0.113.66")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused["Retry-After"]) <= 15 * 60
    # ...but the owner, from an address that has not been failing, logs in.
    assert login(anon, "alice", PASSWORD, "198.51.100.7").status_code == 200


def test_one_address_spraying_many_usernames_is_stopped(anon, db, limits):
    limits(address="6/h")
    codes = [login(anon, f"user{n}", "password1", "203.0.113.9").status_code for n in range(8)]
    assert codes == [401] * 6 + [429] * 2
    assert login(anon, "user99", "password1", "203.0.113.10").status_code == 401


def test_a_username_attacked_from_many_addresses_gives_each_new_address_one_try(anon, alice, limits):
    limits(username="4/h")
    for n in range(4):
        assert login(anon, "alice", "wrong", f"203.0.113.{n}").status_code == 401
    # Past the username's limit, a new address gets one guess, then is refused for this username.
    assert login(anon, "alice", "wrong", "203.0.113.50").status_code == 401
    assert login(anon, "alice", "wrong again", "203.0.113.50").status_code == 429
    # The owner's address has not been failing: the right password still logs in.
    assert login(anon, "alice", PASSWORD, "198.51.100.7").status_code == 200


def test_a_correct_password_takes_back_its_count_and_clears_its_address(anon, alice, limits):
    limits(username_address="3/15m")
    for _ in range(2):
        assert login(anon, "alice", "typo", "198.51.100.7").status_code == 401
    assert login(anon, "alice", PASSWORD, "198.51.100.7").status_code == 200
    # A fresh start for this address: three more typos before it is refused.
    codes = [login(anon, "alice", "typo", "198.51.100.7").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_requests_refused_before_a_password_is_judged_are_not_failures(anon, alice, limits):
    limits(username_address="2/15m")
    for _ in range(5):  # no password: the serializer's 400, not a guess
        response = anon.post(TOKEN, {"username": "alice"}, format="json", REMOTE_ADDR="198.51.100.7")
        assert response.status_code == 400
    assert login(anon, "alice", PASSWORD, "198.51.100.7").status_code == 200


def test_the_counts_hold_under_concurrency(gunicorn_server, alice):
    """Twenty-four guesses at once from one address, on four workers: exactly the limit's worth
    reach the password check; every other one is refused."""
    base = gunicorn_server(workers=4, RATE_LIMIT_LOGIN_IP="1000/m", LOGIN_FAILURES_PER_USERNAME_AND_ADDRESS="5/h")

    def guess(n: int) -> int:
        body = {"username": "alice", "password": f"guess {n}"}
        return requests.post(f"{base}{TOKEN}", json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=24) as pool:
        codes = list(pool.map(guess, range(24)))
    assert sorted(codes) == [401] * 5 + [429] * 19


@pytest.mark.parametrize("username", [12345, 1.5, True, ["alice"], None])
def test_a_username_that_is_not_a_string_is_400_not_a_free_guess(anon, db, limits, username):
    """simplejwt would turn 12345 into "12345" and judge the password, past every failure count."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("12345", password=PASSWORD)
    response = anon.post(TOKEN, {"username": username, "password": "guess"}, format="json")
    assert response.status_code == 400
    assert "username" in response.json()["error"]["details"]


def test_ipv6_addresses_are_counted_by_their_64(anon, alice, limits):
    """One subscriber holds a whole /64: its 2**64 addresses are one address to the limits."""
    for n in range(5):
        assert login(anon, "alice", "wrong", f"2001:db8:1:2::{n + 1:x}").status_code == 401
    assert login(anon, "alice", "wrong", "2001:db8:1:2:ffff::9").status_code == 429
    assert login(anon, "alice", PASSWORD, "2001:db8:1:3::1").status_code == 200  # another /64


def test_usernames_are_not_kept_in_clear_in_the_cache(anon, db, limits):
    from django_redis import get_redis_connection

    login(anon, "hunter2-typed-as-a-username", "x", "203.0.113.4")
    keys = [key.decode() for key in get_redis_connection("default").keys("*login-failures*")]
    assert keys
    assert not [key for key in keys if "hunter2" in key or "203.0.113.4" in key]


def test_the_admin_login_has_the_same_limits(client, staff, limits):
    limits(username_address="3/15m")
    page = "/admin/login/?next=/admin/"
    for _ in range(3):
        response = client.post(page, {"username": "staff", "password": "wrong"}, REMOTE_ADDR="203.0.113.8")
        assert "Please enter the correct username and password" in response.content.decode()
    refused = client.post(page, {"username": "staff", "password": PASSWORD}, REMOTE_ADDR="203.0.113.8")
    assert "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # The owner, elsewhere, gets in.
    assert client.post(page, {"username": "staff", "password": PASSWORD}, REMOTE_ADDR="198.51.100.7").status_code == 302
