"""`motif-video serve`: the API (uvicorn) in this process and worker processes beside it.

Workers are child processes (`python -m motif_video.serve.worker`), one per GPU or one on the CPU by default; one
that exits is started again (a job it held is claimed again once its lease expires). On SIGTERM/SIGINT the API
stops, then the workers are asked to stop (each gives its job back to the queue) and killed if they do not within
`STOP_SECONDS`. Open event streams end as the API stops, and any other request still open after `GRACEFUL_SECONDS`
is cancelled, so that SIGTERM always stops the server. Several machines: one database (PostgreSQL) and one results
folder (a shared file system); hosts with `--no-api` run only workers.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .fields import Limits

STOP_SECONDS = 30.0
GRACEFUL_SECONDS = 5.0  # requests still open this long after SIGTERM are cancelled (event streams end first)
FAST_EXITS = 5  # a worker that exits this many times in a row within RESTART_WINDOW is not started again
RESTART_WINDOW = 20.0


@dataclass
class ServeConfig:
    model: str = "small"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = None  # None: one per GPU, else one on the CPU
    database: str | None = None
    results: Path = Path("motif-video-results")
    token: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0  # per CPU worker; 0: the machine's cores shared among them
    lease: float = 30.0
    api: bool = True
    limits: Limits = field(default_factory=Limits)


def worker_devices(config: ServeConfig) -> list[str]:
    if config.device == "cpu" or config.workers == 0:
        return [config.device] * (1 if config.workers is None else config.workers)
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if config.device.startswith("cuda:"):
        if int(config.device[5:]) >= gpus:
            raise ValueError(f"device {config.device!r} requested but this machine has {gpus} CUDA device(s)")
        return [config.device] * (1 if config.workers is None else config.workers)
    count = (gpus or 1) if config.workers is None else config.workers
    if gpus:
        return [f"cuda:{i % gpus}" for i in range(count)]
    if config.device == "cuda":
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return ["cpu"] * count


class WorkerPool:
    """Starts the worker processes, starts again the ones that exit, stops them all."""

    def __init__(self, commands: list[list[str]], check_seconds: float = 1.0):
        self.commands, self.check_seconds = commands, check_seconds
        self.procs: list[subprocess.Popen | None] = [None] * len(commands)
        self.given_up: list[int] = []  # workers that kept exiting
        self._fast_exits = [0] * len(commands)
        self._started = [0.0] * len(commands)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _spawn(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self.commands[i])
        self._started[i] = time.monotonic()

    def start(self) -> None:
        for i in range(len(self.commands)):
            self._spawn(i)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_seconds):
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                fast = time.monotonic() - self._started[i] < RESTART_WINDOW
                self._fast_exits[i] = self._fast_exits[i] + 1 if fast else 0
                if self._fast_exits[i] >= FAST_EXITS:
                    print(f"motif-video serve: worker {i} keeps exiting (status {proc.returncode}); not restarted",
                          file=sys.stderr, flush=True)  # fmt: skip
                    self.procs[i] = None
                    self.given_up.append(i)
                    continue
                print(f"motif-video serve: worker {i} (pid {proc.pid}) exited with {proc.returncode}; restarting",
                      file=sys.stderr, flush=True)  # fmt: skip
                self._spawn(i)

    def problem(self) -> str | None:
        """What is wrong with this host's workers, for /health: None while every one runs or is restarted."""
        if not self.given_up:
            return None
        n = len(self.given_up)
        which = "every worker" if n == len(self.commands) else f"{n} worker(s)"
        return f"{which} of this host kept exiting and is not restarted (the server's log says why)"

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def worker_commands(config: ServeConfig) -> list[list[str]]:
    devices = worker_devices(config)
    cpu_workers = sum(d == "cpu" for d in devices)
    threads = config.threads or max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
    # --parent: the workers stop once this process is gone, however it went
    base = [sys.executable, "-m", "motif_video.serve.worker", "--results", str(config.results),
            "--model", config.model, "--dtype", config.dtype, "--lease", str(config.lease),
            "--parent", str(os.getpid())]  # fmt: skip
    if config.database:
        base += ["--database", config.database]
    return [
        [*base, "--device", d, "--threads", str(threads if d == "cpu" else config.threads)] for d in devices
    ]


def serve(config: ServeConfig) -> int:
    from .store import StoreUnavailable, open_store

    config.results = Path(config.results).resolve()
    try:
        config.results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--results {config.results} cannot be a folder of results: {exc}") from exc
    try:
        store = open_store(config.database, config.results)  # creates the tables before any worker starts
    except (OSError, sqlite3.Error, StoreUnavailable) as exc:
        raise ValueError(f"--database: cannot open the queue: {exc}") from exc
    pool = WorkerPool(worker_commands(config))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn raises the signal again once it has stopped: then
        signal.signal(sig, lambda *_: stopping.set())  # only note it, the workers are stopped below
    pool.start()
    try:
        if config.api:
            _run_api(config, store, pool.problem)
        else:
            print("motif-video serve: workers only (--no-api)", flush=True)
            while not stopping.wait(1.0):
                pass
    finally:
        pool.stop()
    return 0


def _run_api(config: ServeConfig, store, problem) -> None:
    import uvicorn

    from .app import AppConfig, create_app

    app_config = AppConfig(store, config.results, config.model, config.limits, config.token, problem=problem)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            app_config.stopping.set()  # uvicorn waits for open responses: the event streams end first
            await super().shutdown(sockets)

    app = create_app(app_config)
    options = {"log_level": "warning", "access_log": False, "timeout_graceful_shutdown": GRACEFUL_SECONDS}
    server = Server(uvicorn.Config(app, host=config.host, port=config.port, **options))
    print(f"motif-video serve: http://{config.host}:{config.port}/ ({config.model}; results in {config.results})",
          flush=True)  # fmt: skip
    server.run()
