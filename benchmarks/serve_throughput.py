"""`motif-video serve` throughput and latency, and what a warm worker saves against `motif-video generate`.

For each worker count: a fresh `motif-video serve` on 127.0.0.1 (SQLite queue in a temporary folder, CPU workers
with one torch thread each), `--jobs` jobs submitted at once, each with the small model's own settings (64x64, 33
frames, 20 steps) and its own seed. Reported: jobs per minute (jobs / time from the first submission to the last
completion), latency percentiles (submission to completion, nearest rank) and the median time a worker spent on a
job (claim to recorded result). `motif-video generate` with the same settings (a new process: imports, model
load, one video; one torch thread) runs `--generate-runs` times, interleaved with the service runs (before, between,
after); the time saved per job by the warm model is the median generate wall time minus the median job time on one
warm worker.

    PYTHONPATH=src python benchmarks/serve_throughput.py --workers 1,2 --jobs 24
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROMPT = "a red circle moving left on a black background"
SRC = Path(__file__).resolve().parents[1] / "src"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None, timeout: float = 30) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def run_service(workers: int, jobs: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="motif-video-serve-bench-") as tmp:
        port = _port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "motif_video.cli", "serve", "--model", "small", "--port", str(port),
               "--results", tmp, "--workers", str(workers), "--threads", "1", "--device", "cpu"]  # fmt: skip
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if _call(f"{url}/health")["workers"] >= workers:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"the server did not start: {(Path(tmp) / 'serve.log').read_text()[-2000:]}"
                    )
                time.sleep(0.5)
            start = time.time()
            ids = [_call(f"{url}/v1/videos", {"prompt": PROMPT, "seed": i})["id"] for i in range(jobs)]
            deadline = time.monotonic() + timeout
            records: dict[str, dict] = {}
            while len(records) < jobs:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{jobs - len(records)} jobs unfinished after {timeout} s")
                for job_id in ids:
                    if job_id not in records:
                        job = _call(f"{url}/v1/videos/{job_id}")
                        if job["state"] in ("succeeded", "failed", "cancelled"):
                            records[job_id] = job
                time.sleep(0.2)
            failed = [j for j in records.values() if j["state"] != "succeeded"]
            if failed:
                raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0]['error']}")
            end = max(j["finished_at"] for j in records.values())
            latency = [j["finished_at"] - j["created_at"] for j in records.values()]
            running = [j["finished_at"] - j["started_at"] for j in records.values()]
            settings = next(iter(records.values()))["settings"]
            return {
                "workers": workers,
                "jobs": jobs,
                "size": f"{settings['width']}x{settings['height']}x{settings['num_frames']}",
                "steps": settings["steps"],
                "jobs_per_minute": 60 * jobs / (end - start),
                "latency_p50": _percentile(latency, 0.5),
                "latency_p90": _percentile(latency, 0.9),
                "latency_p99": _percentile(latency, 0.99),
                "job_seconds_median": statistics.median(running),
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def run_generate(runs: int) -> list[float]:
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="motif-video-generate-bench-") as tmp:
        for i in range(runs):
            cmd = [sys.executable, "-m", "motif_video.cli", "generate", "--model", "small", "--prompt", PROMPT,
                   "--seed", str(i), "--threads", "1", "--device", "cpu", "--output", f"{tmp}/{i}.mp4"]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(cmd, env=_env(), check=True, capture_output=True, timeout=600)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated (default: 1,2)")
    p.add_argument("--jobs", type=int, default=24, help="jobs per worker count (default: 24)")
    p.add_argument("--generate-runs", type=int, default=3, help="motif-video generate runs (default: 3)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds for one worker count's jobs")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs", flush=True)
    # generate runs interleaved with the service runs (before, between, after), so load changes hit both alike
    counts = [int(w) for w in args.workers.split(",")]
    slots = len(counts) + 1
    share = [args.generate_runs // slots + (i < args.generate_runs % slots) for i in range(slots)]
    generate = run_generate(share[0])
    rows = []
    for i, workers in enumerate(counts):
        rows.append(run_service(workers, args.jobs, args.timeout))
        generate += run_generate(share[i + 1])
    print(
        "| workers | jobs | size, steps | jobs / min | latency p50 / p90 / p99 (s) | s per job on a worker |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['jobs']} | {r['size']}, {r['steps']} | {r['jobs_per_minute']:.1f} | "
              f"{r['latency_p50']:.1f} / {r['latency_p90']:.1f} / {r['latency_p99']:.1f} | "
              f"{r['job_seconds_median']:.2f} |")  # fmt: skip
    warm = (
        statistics.median(r["job_seconds_median"] for r in rows if r["workers"] == 1)
        if any(r["workers"] == 1 for r in rows)
        else rows[0]["job_seconds_median"]
    )
    cold = statistics.median(generate)
    print(f"\nmotif-video generate (new process each), median of {len(generate)}: {cold:.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in generate)})")  # fmt: skip
    print(f"warm worker, median job: {warm:.2f} s; saved per job: {cold - warm:.2f} s ({cold / warm:.1f}x)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
