"""Real parts for the service tests: `motif-video serve` processes on loopback, a throwaway PostgreSQL cluster.

PostgreSQL: `MOTIF_VIDEO_TEST_POSTGRES` (a server URL whose user may create databases, as `.ci/run` exports), else
a cluster started here with the local server binaries (`initdb`, `pg_ctl`; as the `postgres` user when run as root);
the PostgreSQL tests are skipped only when neither exists. Every wait is bounded.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

SRC = Path(__file__).resolve().parents[2] / "src"
PROMPT = "a red circle moving left on a black background"
TINY = {"width": 32, "height": 32, "num_frames": 5, "steps": 2}  # seconds on one CPU thread
TOKEN = "test-token-7f3a"
BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` seconds pass (fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }


class Server:
    """A `motif-video serve` process on 127.0.0.1 and an HTTP client for it."""

    def __init__(self, results: Path, database: str | None, *extra: str, token: str | None = TOKEN):
        self.results, self.database, self.extra, self.token = results, database, extra, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = results.parent / f"serve-{self.port}.log"

    def start(self, workers: int = 1, ready_workers: int | None = None, timeout: float = 120) -> Server:
        cmd = [sys.executable, "-m", "motif_video.cli", "serve", "--model", "small", "--host", "127.0.0.1",
               "--port", str(self.port), "--results", str(self.results), "--workers", str(workers),
               "--threads", "1", *self.extra]  # fmt: skip
        if self.database:
            cmd += ["--database", self.database]
        if self.token:
            cmd += ["--token", self.token]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(
            base_url=self.url,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
        )
        want = workers if ready_workers is None else ready_workers

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                health = self.client.get("/health")
            except httpx.HTTPError:
                return False
            return health.status_code == 200 and health.json()["workers"] >= want

        wait_for(ready, timeout, f"the server and {want} worker(s)", interval=0.3)
        return self

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail(f"serve did not stop within {timeout} s of SIGTERM")
        finally:
            self.client.close()

    # ------------------------------------------------------------------------------------------------- helpers
    def submit(self, **fields) -> dict:
        response = self.client.post("/v1/videos", json={"prompt": PROMPT, **fields})
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        response = self.client.get(f"/v1/videos/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 120) -> dict:
        return wait_for(
            lambda: (j := self.job(job_id))["state"] in states and j, timeout, f"job {job_id} {states}"
        )

    def total(self) -> int:
        return self.client.get("/v1/videos", params={"limit": 1}).json()["total"]


# ---------------------------------------------------------------------------------------------------- PostgreSQL
def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server URL (user may create databases); skips only when no server binaries exist here."""
    given = os.environ.get("MOTIF_VIDEO_TEST_POSTGRES")
    if given:
        yield given
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) here; .ci/run installs them")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="motif-video-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        os.chmod(root, 0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60",
                    "start"], check=True, capture_output=True, timeout=90)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
                       capture_output=True, timeout=90)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def new_postgres_database(server_url: str) -> str:
    import psycopg

    name = f"motif_video_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=BACKENDS, scope="module")
def database(request, tmp_path_factory):
    """A fresh, empty queue: a SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'jobs.sqlite3'}"
    return new_postgres_database(request.getfixturevalue("postgres_url"))


def generate_reference(out: Path, seed: int, image: Path | None = None, *flags: str, **settings) -> Path:
    """`motif-video generate` with the same settings (in this process, one torch thread like the workers here);
    `flags`: more arguments as given."""
    from motif_video.cli import main

    argv = ["generate", "--model", "small", "--prompt", PROMPT, "--output", str(out), "--seed", str(seed),
            "--threads", "1", "--device", "cpu"]  # fmt: skip
    for key, value in settings.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    if image is not None:
        argv += ["--image", str(image)]
    assert main([*argv, *flags]) == 0
    return out
