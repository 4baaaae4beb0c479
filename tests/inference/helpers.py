from __future__ import annotations

import tempfile
import time
from pathlib import Path

import joblib
import requests
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from inference.models import ModelVersion
from inference.services import model_register

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_NAMED = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


def register_tree(name: str = "iris", *, activate: bool = False) -> ModelVersion:
    """A second, different iris classifier registered as the next version of `name`."""
    data = load_iris()
    estimator = DecisionTreeClassifier(max_depth=1, random_state=0).fit(data.data, data.target)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree.joblib"
        joblib.dump(estimator, path)
        return model_register(name=name, source=path, activate=activate, feature_names=list(data.feature_names))


def prediction_latencies(session: requests.Session, base_url: str, key: str, count: int) -> list[float]:
    """Seconds each of `count` single-row predictions took, one after another."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.post(
            f"{base_url}/api/v1/predictions/", json={"features": IRIS_ROW}, headers={"X-API-Key": key}, timeout=30
        )
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
    return latencies


def assert_streams_arrive_as_made(base_url: str, key: str) -> dict[str, str]:
    """The first event of a stream reaches the client while the generation is still going (its
    record is written at the end), on the service's own SSE route and through the OpenAI SDK on
    /v1/chat/completions. Needs the fake upstream sending chunks slowly. Returns the SSE answer's
    headers."""
    from openai import OpenAI

    from inference.models import Generation

    prompt = "one two three four five six"
    with requests.post(
        f"{base_url}/api/v1/generations/",
        json={"prompt": prompt, "stream": True},
        headers={"X-API-Key": key},
        stream=True,
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines).startswith(b"event: delta")
        assert not Generation.objects.exists()  # still being made
        rest = b"\n".join(lines)
        headers = dict(response.headers)
    assert b"event: done" in rest
    assert Generation.objects.get().output == f"Echo: {prompt}"

    client = OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True
    )
    first = next(iter(stream))
    assert Generation.objects.count() == 1  # the second is still being made
    text = (first.choices[0].delta.content or "") + "".join(
        chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
    )
    assert text == f"Echo: {prompt}"
    return headers
