"""The queue's database going away under a running service: connections the database ended are replaced, and what
cannot be recovered answers in the API's one error shape."""

from __future__ import annotations

import pytest

from motif_video.serve.app import AppConfig, create_app
from motif_video.serve.store import StoreUnavailable, open_store

from .conftest import PROMPT, TINY, new_postgres_database

testclient = pytest.importorskip("fastapi.testclient")


def _end_sessions(server_url: str, database: str, drop: bool = False) -> int:
    """End every session on `database` from another connection, as a restart of the server does (and drop it)."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()[0]
        if drop:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
    return ended


def test_postgres_sessions_ended_by_the_database_are_replaced(postgres_url, tmp_path):
    url = new_postgres_database(postgres_url)
    name = url.rsplit("/", 1)[1]
    store = open_store(url, tmp_path)
    app = create_app(AppConfig(store, tmp_path))
    # one event loop whose threads (and their connections) are kept, as a server's are
    with testclient.TestClient(app, raise_server_exceptions=False) as client:
        job = client.post("/v1/videos", json={"prompt": PROMPT, **TINY})
        assert job.status_code == 202, job.text
        assert client.get("/health").status_code == 200
        assert store.counts()["queued"] == 1  # this thread's connection too (a worker's)
        assert _end_sessions(postgres_url, name) >= 2
        # every route and the worker's calls go on, each on a new connection
        assert client.get(f"/v1/videos/{job.json()['id']}").json()["state"] == "queued"
        assert client.get("/health").json()["queued"] == 1
        assert client.post("/v1/videos", json={"prompt": PROMPT, **TINY}).status_code == 202
        claimed = store.claim("worker", lease=30)
        assert claimed is not None and claimed["id"] == job.json()["id"]
        # a database that stays away: 503 in the API's error shape, and the store's own error for a worker
        _end_sessions(postgres_url, name, drop=True)
        for path in ("/health", "/v1/videos", f"/v1/videos/{job.json()['id']}"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.json() == {"detail": "the queue's database cannot be reached; try again shortly"}
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            store.claim("worker", lease=30)


def test_an_unexpected_error_answers_json(tmp_path, monkeypatch):
    store = open_store(None, tmp_path)

    def broken():
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(store, "counts", broken)
    app = create_app(AppConfig(store, tmp_path))
    with testclient.TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/health")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error (RuntimeError)"}


def test_a_worker_waits_for_the_database_to_record_a_finished_job(tmp_path, monkeypatch, capfd):
    """The database is away just as a job's video is written: the worker tries again until it is back and records
    the job (it used to raise out of its loop, and the job ran again after its lease)."""
    from motif_video.serve.worker import Worker

    store = open_store(None, tmp_path)
    app = create_app(AppConfig(store, tmp_path))
    with testclient.TestClient(app) as client:
        job = client.post("/v1/videos", json={"prompt": PROMPT, "seed": 3, **TINY}).json()
    worker = Worker(store, tmp_path, "small", device="cpu", dtype="float32", poll=0.01)
    worker.load()
    complete, refusals = store.complete, iter(range(2))

    def away_twice(*args):
        if next(refusals, None) is not None:
            raise StoreUnavailable("cannot connect to the database: (a restart)")
        return complete(*args)

    monkeypatch.setattr(store, "complete", away_twice)
    assert worker.run(max_jobs=1) == 1
    record = store.get(job["id"])
    assert record["state"] == "succeeded", record
    assert (tmp_path / record["result"]).is_file()
    assert capfd.readouterr().err.count("(a restart); trying again") == 2
    assert store.workers() == []
