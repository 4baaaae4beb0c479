"""A body sent in chunks (no Content-Length) is read, not taken for an empty one."""

import http.client
import io
import json
from urllib.parse import urlparse

import pytest

from accounts.services import api_key_create
from analytics.models import RequestLog
from project.request_bodies import ChunkedBodies


def _post_chunked(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    address = urlparse(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    connection.request("POST", path, body=iter(pieces), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read() or b"{}"))
    connection.close()
    return answer


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read_under_gunicorn(gunicorn_server, alice):
    base = gunicorn_server(workers=1, MAX_REQUEST_BODY_BYTES="2000")
    key = api_key_create(user=alice, name="chunks", created_by=None).key
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    body = json.dumps({"model": "iris", "features": [6.7, 3.0, 5.2, 2.3]}).encode()
    status, answer = _post_chunked(base, "/api/v1/predictions/", body, headers)
    assert (status, answer["prediction"]) == (201, [2])
    logged = RequestLog.objects.filter(endpoint="v1:prediction-list").get()
    assert logged.request_bytes == len(body)
    # Without a key: a 401, as for any body (a view reads it, after authentication).
    status, answer = _post_chunked(base, "/api/v1/predictions/", b"x" * 1000, {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"]) == (401, "not_authenticated")
    # Over the body limit, chunked or not: the usual 413 in the error shape.
    big = json.dumps({"model": "iris", "instances": [[6.7, 3.0, 5.2, 2.3]] * 200}).encode()
    status, answer = _post_chunked(base, "/api/v1/predictions/", big, headers)
    assert (status, answer["error"]["code"]) == (413, "payload_too_large")


def test_a_server_that_cannot_end_a_chunked_body_answers_411():
    called = []
    app = ChunkedBodies(lambda environ, start_response: called.append(environ) or [b""])
    statuses = []
    environ = {"REQUEST_METHOD": "POST", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"{}")}
    body = b"".join(app(environ, lambda status, headers: statuses.append((status, dict(headers)))))
    assert statuses[0][0] == "411 Length Required"
    assert statuses[0][1]["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "length_required"
    assert called == []
