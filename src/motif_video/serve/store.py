"""The job queue and job records in a database: SQLite (a file, the default) or PostgreSQL (several machines).

A job moves queued -> running -> succeeded | failed | cancelled. A worker claims the oldest queued job in one
atomic statement (SQLite: `UPDATE ... RETURNING` under the database's single writer; PostgreSQL: `FOR UPDATE SKIP
LOCKED`), which also gives it a claim token and a lease. Everything a worker writes afterwards (progress, lease
renewal, the result, an error) names the job *and* the claim, so a worker whose lease expired (and whose job was
claimed again) or whose job was cancelled changes nothing. A running job whose lease has expired is claimed again
like a queued one; after `max_attempts` claims it fails instead. Times are seconds since the epoch.

A job's uploads (first and last image, keyframes, input video) are rows of `media`, written in the transaction that
queues the job and deleted when it succeeds. (`jobs.image` held the first frame of jobs queued by earlier versions;
it is still read for those.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
# columns returned to callers (the uploads are read separately: `media`)
COLUMNS = (
    "id, state, settings, created_at, started_at, finished_at, step, steps, worker, claim, lease_until, "
    "attempts, error, result, step_seconds, peak_memory_gb"
)


class QueueFull(Exception):
    """The queue holds `max_queue` jobs already."""


class StoreUnavailable(Exception):
    """The database cannot be reached (down, restarting, or it ended the connection mid-transaction); the next
    call connects again."""


def _schema(blob: str, real: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY, state TEXT NOT NULL, settings TEXT NOT NULL, image {blob},
            created_at {real} NOT NULL, started_at {real}, finished_at {real},
            step INTEGER NOT NULL DEFAULT 0, steps INTEGER NOT NULL,
            worker TEXT, claim TEXT, lease_until {real}, attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT, result TEXT, step_seconds {real}, peak_memory_gb {real})""",
        "CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created_at)",
        "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at)",
        f"""CREATE TABLE IF NOT EXISTS workers (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, device TEXT NOT NULL,
            model TEXT NOT NULL, started_at {real} NOT NULL, seen_at {real} NOT NULL,
            jobs_done INTEGER NOT NULL DEFAULT 0, peak_memory_gb {real})""",
        f"""CREATE TABLE IF NOT EXISTS media (
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, position INTEGER NOT NULL,
            role TEXT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (job_id, position))""",
    ]


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def open_store(url: str | None, results: Path) -> JobStore:
    """`url`: None (SQLite file `jobs.sqlite3` in `results`), `sqlite:///PATH` or `postgresql://...`."""
    if url is None:
        return SQLiteStore(Path(results) / "jobs.sqlite3")
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError(f"database must be sqlite:///PATH or postgresql://..., got {url!r}")


class JobStore:
    """One connection per thread; every method is one transaction. A connection the database has closed (it
    restarted, or ended the session) is replaced: at the start of a transaction it is opened again and the
    transaction begun once more; one lost mid-transaction raises `StoreUnavailable` (the transaction was rolled
    back) and the next call opens a new one."""

    placeholder = "?"
    schema: list[str] = []

    def __init__(self) -> None:
        self._local = threading.local()

    # ------------------------------------------------------------------------------------------ dialect hooks
    def _connect(self):
        """A new connection; `StoreUnavailable` when the database cannot be reached."""
        raise NotImplementedError

    def _lost(self, conn) -> bool:
        """Whether `conn` is no longer usable (closed by the database)."""
        return False

    def _begin_write(self, cur) -> None:
        raise NotImplementedError

    def _serialise(self, cur) -> None:
        """Within a write transaction: wait for other submits (the queue-length check counts, then inserts)."""

    def _claim_sql(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ plumbing
    @property
    def conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or self._lost(conn):
            conn = self._local.conn = self._connect()
        return conn

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    @contextmanager
    def _transaction(self, write: bool = True):
        """A cursor inside one transaction: committed when the block ends, rolled back if it raises."""
        conn, cur = self._begin(write)
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException as exc:
            if self._lost(conn):  # the database ended the session: nothing to roll back here
                raise StoreUnavailable(f"the database connection was lost: {exc}") from exc
            conn.rollback()
            raise
        finally:
            cur.close()

    def _begin(self, write: bool, retry: bool = True):
        """A connection and a cursor in a new transaction; a connection found closed by the database as the
        transaction begins (nothing has run in it yet) is replaced once."""
        conn = self.conn
        cur = conn.cursor()
        try:
            if write:
                self._begin_write(cur)
            else:
                cur.execute("BEGIN")
        except Exception as exc:
            cur.close()
            if not self._lost(conn):
                conn.rollback()
                raise
            if not retry:
                raise StoreUnavailable(f"the database connection was lost: {exc}") from exc
            return self._begin(write, retry=False)
        return conn, cur

    def _run(self, sql: str, args: tuple = (), fetch: str | None = None, write: bool = True):
        with self._transaction(write) as cur:
            cur.execute(self._sql(sql), args)
            rows = cur.fetchall() if fetch else None
        if fetch == "one":
            return _row(rows[0]) if rows else None
        if fetch == "all":
            return [_row(r) for r in rows]
        return None

    def init_schema(self) -> JobStore:
        with self._transaction() as cur:
            for statement in self.schema:
                cur.execute(statement)
        return self

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    # ------------------------------------------------------------------------------------------------- clients
    def submit(
        self, settings: dict[str, Any], steps: int, media: list[tuple[str, bytes]], max_queue: int
    ) -> dict:
        """Queue a job with its uploads, (role, bytes) in order (atomically refused with QueueFull when `max_queue`
        jobs are queued); returns its record."""
        job_id = uuid.uuid4().hex
        with self._transaction() as cur:
            self._serialise(cur)
            cur.execute("SELECT count(*) AS n FROM jobs WHERE state = 'queued'")
            if _row(cur.fetchone())["n"] >= max_queue:
                raise QueueFull
            cur.execute(
                self._sql(
                    "INSERT INTO jobs (id, state, settings, created_at, steps) VALUES (?, 'queued', ?, ?, ?)"
                ),
                (job_id, json.dumps(settings), time.time(), steps),
            )
            for position, (role, data) in enumerate(media):
                cur.execute(
                    self._sql("INSERT INTO media (job_id, position, role, data) VALUES (?, ?, ?, ?)"),
                    (job_id, position, role, data),
                )
        return self.get(job_id)  # type: ignore[return-value]

    def get(self, job_id: str) -> dict | None:
        return self._run(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,), "one", write=False)

    def media(self, job_id: str) -> list[tuple[str, bytes]]:
        """A job's uploads, (role, bytes) in the order they were queued."""
        rows = self._run(
            "SELECT role, data FROM media WHERE job_id = ? ORDER BY position", (job_id,), "all", write=False
        )
        if not rows:  # a job queued by an earlier version: its first frame, if any, is in jobs.image
            row = self._run("SELECT image FROM jobs WHERE id = ?", (job_id,), "one", write=False)
            return [("image", bytes(row["image"]))] if row and row["image"] is not None else []
        return [(r["role"], bytes(r["data"])) for r in rows]

    def page(self, limit: int, offset: int) -> tuple[list[dict], int]:
        """Jobs newest first, and how many there are."""
        rows = self._run(
            f"SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (limit, offset),
            "all",
            write=False,
        )
        total = self._run("SELECT count(*) AS n FROM jobs", (), "one", write=False)["n"]
        return rows, total

    def cancel(self, job_id: str) -> dict | None:
        """Cancel a queued or running job; returns its record (unchanged if it had already ended), None if unknown."""
        self._run(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?, claim = NULL "
            "WHERE id = ? AND state IN ('queued', 'running')",
            (time.time(), job_id),
        )
        return self.get(job_id)

    def counts(self) -> dict[str, int]:
        rows = self._run("SELECT state, count(*) AS n FROM jobs GROUP BY state", (), "all", write=False)
        return {state: 0 for state in STATES} | {r["state"]: r["n"] for r in rows}

    def recent_step_seconds(self, last: int = 100) -> list[float]:
        rows = self._run(
            "SELECT step_seconds FROM jobs WHERE state = 'succeeded' AND step_seconds IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?",
            (last,),
            "all",
            write=False,
        )
        return [r["step_seconds"] for r in rows]

    def workers(self) -> list[dict]:
        return self._run("SELECT * FROM workers ORDER BY id", (), "all", write=False)

    # ------------------------------------------------------------------------------------------------- workers
    def register_worker(self, worker: str, host: str, pid: int, device: str, model: str) -> None:
        """Record a worker (and forget this host's workers whose process is gone, e.g. killed)."""
        now = time.time()
        for row in self._run("SELECT id, pid FROM workers WHERE host = ?", (host,), "all", write=False):
            if row["id"] == worker or not process_alive(row["pid"]):
                self._run("DELETE FROM workers WHERE id = ?", (row["id"],))
        self._run(
            "INSERT INTO workers (id, host, pid, device, model, started_at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (worker, host, pid, device, model, now, now),
        )

    def worker_seen(self, worker: str, peak_memory_gb: float | None = None, done: int = 0) -> None:
        self._run(
            "UPDATE workers SET seen_at = ?, jobs_done = jobs_done + ?, "
            "peak_memory_gb = COALESCE(?, peak_memory_gb) WHERE id = ?",
            (time.time(), done, peak_memory_gb, worker),
        )

    def remove_worker(self, worker: str) -> None:
        self._run("DELETE FROM workers WHERE id = ?", (worker,))

    def claim(self, worker: str, lease: float, max_attempts: int = 3) -> dict | None:
        """Take the oldest queued job (or one whose lease expired) for `worker`; None when there is none."""
        now = time.time()
        self._run(
            "UPDATE jobs SET state = 'failed', finished_at = ?, claim = NULL, "
            "error = 'the worker running it stopped ' || attempts || ' times (lease expired)' "
            "WHERE state = 'running' AND lease_until < ? AND attempts >= ?",
            (now, now, max_attempts),
        )
        return self._run(self._claim_sql(), (worker, uuid.uuid4().hex, now + lease, now, now), "one")

    def renew(self, job_id: str, claim: str, lease: float) -> bool:
        """Extend the lease; False when the job is no longer this claim's (cancelled, or claimed again)."""
        row = self._run(
            "UPDATE jobs SET lease_until = ? WHERE id = ? AND claim = ? AND state = 'running' RETURNING id",
            (time.time() + lease, job_id, claim),
            "one",
        )
        return row is not None

    def progress(self, job_id: str, claim: str, step: int, lease: float, steps: int | None = None) -> bool:
        """Record the job's `step` (of `steps` in all, when given: the total its worker counts) and extend the lease;
        False when the job is no longer this claim's."""
        row = self._run(
            "UPDATE jobs SET step = ?, steps = COALESCE(?, steps), lease_until = ? "
            "WHERE id = ? AND claim = ? AND state = 'running' RETURNING id",
            (step, steps, time.time() + lease, job_id, claim),
            "one",
        )
        return row is not None

    def complete(
        self,
        job_id: str,
        claim: str,
        result: str,
        step_seconds: float,
        peak_memory_gb: float,
        settings: dict[str, Any] | None = None,
    ) -> bool:
        """Record a finished job whose result file is already in place (its uploads are deleted); `settings`, when
        given, replaces the job's (the worker's, with what the run resolved filled in)."""
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "UPDATE jobs SET state = 'succeeded', finished_at = ?, result = ?, step = steps, "
                    "step_seconds = ?, peak_memory_gb = ?, claim = NULL, image = NULL, "
                    "settings = COALESCE(?, settings) "
                    "WHERE id = ? AND claim = ? AND state = 'running' RETURNING id"
                ),
                (time.time(), result, step_seconds, peak_memory_gb, _json_or_none(settings), job_id, claim),
            )
            done = bool(cur.fetchall())
            if done:
                cur.execute(self._sql("DELETE FROM media WHERE job_id = ?"), (job_id,))
        return done

    def fail(self, job_id: str, claim: str, error: str) -> bool:
        row = self._run(
            "UPDATE jobs SET state = 'failed', finished_at = ?, error = ?, claim = NULL "
            "WHERE id = ? AND claim = ? AND state = 'running' RETURNING id",
            (time.time(), error, job_id, claim),
            "one",
        )
        return row is not None

    def release(self, job_id: str, claim: str) -> bool:
        """Give a running job back to the queue (a worker that is stopping); its attempt is not counted."""
        row = self._run(
            "UPDATE jobs SET state = 'queued', step = 0, worker = NULL, claim = NULL, lease_until = NULL, "
            "started_at = NULL, attempts = attempts - 1 "
            "WHERE id = ? AND claim = ? AND state = 'running' RETURNING id",
            (job_id, claim),
            "one",
        )
        return row is not None


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host is running: one that exists but belongs to another user (signalling it is
    not permitted) is; one with no such process is not. For the workers and job folders of this host's processes
    that were killed outright (`JobStore.register_worker`, `worker.remove_stale_job_dirs`)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(row) -> dict:
    if isinstance(row, dict):
        out = dict(row)
    else:
        out = {k: row[k] for k in row.keys()}  # noqa: SIM118 (sqlite3.Row)
    if "settings" in out and isinstance(out["settings"], str):
        out["settings"] = json.loads(out["settings"])
    return out


class SQLiteStore(JobStore):
    placeholder = "?"
    schema = _schema("BLOB", "REAL")

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.init_schema()

    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _begin_write(self, cur) -> None:
        cur.execute("BEGIN IMMEDIATE")  # the one writer from here on: count-then-insert and claims are atomic

    def _claim_sql(self) -> str:
        return (
            "UPDATE jobs SET state = 'running', worker = ?, claim = ?, lease_until = ?, started_at = ?, step = 0, "
            "attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
            "OR (state = 'running' AND lease_until < ?) ORDER BY created_at, id LIMIT 1) "
            f"RETURNING {COLUMNS}"
        )


class PostgresStore(JobStore):
    placeholder = "%s"
    schema = _schema("BYTEA", "DOUBLE PRECISION")

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self.init_schema()

    def _connect(self):
        import psycopg
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to the database: {exc}") from exc

    def _lost(self, conn) -> bool:
        return conn.closed or conn.broken

    def _begin_write(self, cur) -> None:
        cur.execute("BEGIN")

    def _serialise(self, cur) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(7262001)")

    def _claim_sql(self) -> str:
        return (
            "UPDATE jobs SET state = 'running', worker = %s, claim = %s, lease_until = %s, started_at = %s, "
            "step = 0, attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
            "OR (state = 'running' AND lease_until < %s) ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {COLUMNS}"
        )
