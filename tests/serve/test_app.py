"""The API in this process (no server, no workers): what a request is answered, and what the schema declares."""

from __future__ import annotations

import pytest

from motif_video.serve.app import AppConfig, create_app
from motif_video.serve.store import open_store

from .conftest import PROMPT, TINY

testclient = pytest.importorskip("fastapi.testclient")


@pytest.fixture
def client(tmp_path):
    store = open_store(None, tmp_path)
    with testclient.TestClient(create_app(AppConfig(store, tmp_path))) as client:
        yield client
    store.close()


def _parts(*fields: tuple[str, str]) -> list:
    """multipart text parts (no file name), as `curl -F name=value` sends them"""
    return [(name, (None, value)) for name, value in fields]


def test_a_repeated_text_field_is_refused(client):
    form = [("prompt", PROMPT), *((k, str(v)) for k, v in TINY.items())]
    for repeated in (("steps", "50"), ("prompt", "a green square")):
        response = client.post("/v1/videos", files=_parts(*form, repeated))
        assert response.status_code == 422, (repeated, response.text)
        assert response.json() == {
            "detail": f"{repeated[0]} is given more than once; each text field takes one value",
            "field": repeated[0],
        }
    assert client.get("/v1/videos").json()["total"] == 0
    assert client.post("/v1/videos", files=_parts(*form)).status_code == 202
