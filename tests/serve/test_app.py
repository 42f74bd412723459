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


def test_the_schema_declares_every_answer(client, tmp_path):
    schema = client.get("/openapi.json").json()
    queued = client.post("/v1/videos", json={"prompt": PROMPT, **TINY})
    assert queued.status_code == 202
    answers = schema["paths"]["/v1/videos"]["post"]["responses"]
    job = answers["202"]["content"]["application/json"]["schema"]
    assert set(job["properties"]) == set(queued.json()), "the 202 schema lists a job's fields"
    assert set(job["required"]) <= set(queued.json())
    assert job["properties"]["state"]["enum"] == ["queued", "running", "succeeded", "failed", "cancelled"]
    for method, path in (("get", "/v1/videos/{job_id}"), ("delete", "/v1/videos/{job_id}")):
        body = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert body == job, (method, path)
    # the content of a job whose MP4 has gone: 410, declared
    from motif_video.serve.store import open_store

    store = open_store(None, tmp_path)
    job_id = queued.json()["id"]
    claim = store.claim("worker", lease=30)["claim"]
    assert store.complete(job_id, claim, "gone.mp4", 0.1, 0.0)
    gone = client.get(f"/v1/videos/{job_id}/content")
    assert gone.status_code == 410 and "no longer in the results folder" in gone.json()["detail"]
    declared = schema["paths"]["/v1/videos/{job_id}/content"]["get"]["responses"]
    assert "410" in declared and declared["410"]["content"]["application/json"]["schema"]["required"] == [
        "detail"
    ]


def test_an_empty_token_is_refused(tmp_path):
    """An empty token would let `?access_token=` (empty) through, while the Authorization header could never carry
    it: refused; None is no token."""
    with pytest.raises(ValueError, match="token must not be empty"):
        create_app(AppConfig(open_store(None, tmp_path), tmp_path, token=""))
