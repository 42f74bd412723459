"""`motif-video serve`'s workers live no longer than the server: killed outright (SIGKILL, the OOM killer), it
cannot stop them, so each watches for its parent to go and then stops as on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from motif_video.serve.store import open_store
from motif_video.serve.worker import watch_parent

from .conftest import Server, wait_for

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process states from /proc"
)


def running(pid: int) -> bool:
    """Whether process `pid` runs (an exited one that nobody has reaped yet, a zombie, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_watch_parent_stops_only_once_the_parent_is_gone():
    stopping = threading.Event()
    thread = watch_parent(os.getppid(), stopping, interval=0.05)
    time.sleep(0.3)
    assert not stopping.is_set() and thread.is_alive()  # the parent is still there
    stopping.set()  # stopped for another reason: the watch ends too
    thread.join(timeout=5)
    assert not thread.is_alive()

    stopping = threading.Event()
    watch_parent(os.getppid() + 10**6, stopping, interval=0.05)  # no process has this pid: not our parent
    assert stopping.wait(5)


def test_workers_stop_when_the_server_is_killed(tmp_path):
    results = tmp_path / "results"
    server = Server(results, None).start(workers=1)
    store = open_store(None, results)
    [worker] = store.workers()
    try:
        assert running(worker["pid"])
        server.proc.send_signal(signal.SIGKILL)  # no chance to stop its workers
        server.proc.wait(timeout=10)
        server.client.close()
        wait_for(lambda: not running(worker["pid"]), 30, f"worker {worker['pid']} to stop after its server")
        assert store.workers() == []  # it stopped as on SIGTERM: unregistered itself on the way out
        assert f"parent {server.proc.pid} is gone" in server.log.read_text()
    finally:
        store.close()
        if running(worker["pid"]):  # the failure above: leave no orphan behind
            os.kill(worker["pid"], signal.SIGKILL)


def test_a_cancelled_job_stops_its_pipeline_at_once(tmp_path, monkeypatch):
    """The step after a cancel raises out of the pipeline: no decoder fit, repaint or decode runs for a video
    nobody will keep (on the small model the fit alone is more work than its sampling)."""
    from motif_video import MotifVideoPipeline
    from motif_video.pipelines import base
    from motif_video.serve.worker import Worker, _Stopped
    from motif_video.testing import write_tiny_pipeline_folder

    answers = iter([True, False])  # the store accepts step 1's progress; then the job is cancelled

    class Store:
        def progress(self, job_id, claim, step, lease, steps):
            return next(answers)

    worker = Worker(Store(), tmp_path, "small")
    stopped = threading.Event()
    on_step = worker.step_callback("job", "claim", stopped)
    pipe = MotifVideoPipeline.from_pretrained(write_tiny_pipeline_folder(tmp_path / "tiny"))
    pipe.set_progress_bar_config(disable=True)
    after = []
    monkeypatch.setattr(base, "repaint_first_latent", lambda *a, **k: after.append("repaint"))
    monkeypatch.setattr(base, "decode_latents", lambda *a, **k: after.append("decode"))
    with pytest.raises(_Stopped):
        pipe("a red ball", height=64, width=96, num_frames=9, num_inference_steps=4, callback_on_step_end=on_step,
             repaint_first_frame=True, decoder_fit_steps=5)  # fmt: skip
    assert stopped.is_set() and after == []


def test_a_jobs_progress_counts_the_decoder_fit_after_its_steps(tmp_path):
    """A job's progress goes on through the decoder fit that follows its sampling steps, of a total that counts both
    as the pipeline does (before: the sampling steps alone, so a job stood at 100% while its fit ran: on the small
    model 50 Adam steps per fitted latent frame after 20 sampling steps)."""
    import PIL.Image

    from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline
    from motif_video.serve.worker import Worker
    from motif_video.testing import write_tiny_pipeline_folder

    class Store:  # what the worker records, as the job store's `progress` takes it
        def __init__(self):
            self.recorded = []

        def progress(self, job_id, claim, step, lease, steps=None):
            self.recorded.append((step, steps))
            return True

    t2v = MotifVideoPipeline.from_pretrained(write_tiny_pipeline_folder(tmp_path / "tiny"))
    i2v = MotifVideoImageToVideoPipeline.from_pipe(t2v)
    image = PIL.Image.new("RGB", (96, 64), (200, 30, 30))
    for pipe, call, total in (
        (t2v, {"repaint_first_frame": True}, 4 + 5),  # the repainted frame 0: 5 fit steps
        (i2v, {"image": image, "last_image": image}, 4 + 2 * 5),  # latent frames 0 and 2 hold given frames
    ):
        store = Store()
        pipe.set_progress_bar_config(disable=True)
        on_step = Worker(store, tmp_path, "small").step_callback("job", "claim", threading.Event())
        pipe(prompt="a red ball", height=64, width=96, num_frames=9, num_inference_steps=4, decoder_fit_steps=5,
             callback_on_step_end=on_step, callback_on_fit_step=on_step, output_type="latent", **call)  # fmt: skip
        assert store.recorded == [(step, total) for step in range(1, total + 1)]
        assert (pipe.num_timesteps, pipe.num_fit_steps) == (4, total - 4)


def test_a_job_claimed_again_times_its_denoising_steps_only(tmp_path):
    """A job's seconds per step divide its run by its sampling steps, also for a job claimed again after its first
    worker stopped, whose steps the first one's progress made sampling and decoder-fit steps (before: divided by
    those, 2 + 50 on the small model, for a time per step a 26th of the truth)."""
    from motif_video.serve.fields import Limits, settings_from_fields
    from motif_video.serve.worker import Worker

    from .conftest import PROMPT, TINY

    store = open_store(None, tmp_path)
    try:
        settings = settings_from_fields({"prompt": PROMPT, **TINY}, model="small", limits=Limits())
        job = store.submit(settings, settings["steps"], [], max_queue=10)
        first = store.claim("gone:1", 30.0)
        # the first worker's progress: its count of sampling and decoder-fit steps
        store.progress(job["id"], first["claim"], 1, 30.0, TINY["steps"] + 50)
        store.release(job["id"], first["claim"])
        worker = Worker(store, tmp_path, "small")
        worker.load()
        again = store.claim(worker.id, 30.0)
        assert again["steps"] == TINY["steps"] + 50
        start = time.perf_counter()
        worker.run_job(again, torch)
        elapsed = time.perf_counter() - start
        done = store.get(job["id"])
        assert done["state"] == "succeeded", done["error"]
        assert 0.5 * elapsed < done["step_seconds"] * TINY["steps"] <= elapsed
    finally:
        store.close()


def test_sigterm_stops_the_server_with_an_event_stream_open(tmp_path):
    """SIGTERM ends open event streams (the page always holds one) instead of waiting for them: the server exits
    within seconds and the worker gives its running job back."""
    results = tmp_path / "results"
    server = Server(results, None).start(workers=1)
    job = server.submit(width=128, height=128, num_frames=33, steps=100)  # runs for longer than the test
    server.wait_state(job["id"], ("running",), timeout=60)
    with server.client.stream("GET", f"/v1/videos/{job['id']}/events", timeout=30) as stream:
        lines = stream.iter_lines()  # kept: a dropped iterator would close the connection
        assert next(lines).startswith("event: progress")
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)
            pytest.fail("serve did not stop within 15 s of SIGTERM with an event stream open")
    server.client.close()
    assert code == 0 and time.monotonic() - start < 10, server.log.read_text()[-3000:]
    store = open_store(None, results)
    try:
        assert store.get(job["id"])["state"] == "queued"
        assert store.workers() == []
    finally:
        store.close()


def test_health_is_degraded_once_the_workers_are_given_up(tmp_path):
    """A worker that exits at once (a model it cannot load, a device it cannot use) is restarted a few times and
    then given up; /health says so instead of "ok" (503: no worker anywhere will run the queue)."""
    import sys

    from fastapi.testclient import TestClient

    from motif_video.serve.app import AppConfig, create_app
    from motif_video.serve.server import FAST_EXITS, WorkerPool

    pool = WorkerPool([[sys.executable, "-c", "raise SystemExit(3)"]], check_seconds=0.05)
    store = open_store(None, tmp_path)
    app = create_app(AppConfig(store, tmp_path, problem=pool.problem))
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
        pool.start()
        try:
            wait_for(lambda: pool.given_up, 30, f"the worker given up after {FAST_EXITS} exits")
        finally:
            pool.stop()
        health = client.get("/health")
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "degraded" and health.json()["workers"] == 0
    assert "every worker of this host kept exiting" in health.json()["problem"]


def test_a_starting_worker_removes_the_job_folders_of_killed_workers(tmp_path):
    """A worker killed outright never cleans its job's uploads folder; the next worker to start on the host removes
    the folders of workers that are gone and keeps those of workers still running (its own included)."""
    from motif_video.serve.store import process_alive
    from motif_video.serve.worker import JOB_DIR_PREFIX, remove_stale_job_dirs

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    live = subprocess.Popen(["sleep", "30"])
    try:
        assert process_alive(live.pid) and process_alive(os.getpid()) and not process_alive(gone.pid)
        folders = {
            "gone": tmp_path / f"{JOB_DIR_PREFIX}{gone.pid}-abc",
            "live": tmp_path / f"{JOB_DIR_PREFIX}{live.pid}-def",
            "mine": tmp_path / f"{JOB_DIR_PREFIX}{os.getpid()}-ghi",
            "other": tmp_path / "motif-video-jobs-kept",  # not a job folder's name
        }
        for folder in folders.values():
            (folder / "0-image").parent.mkdir()
            (folder / "0-image").write_bytes(b"x")
        assert remove_stale_job_dirs(tmp_path) == 1
        assert [name for name, folder in folders.items() if folder.exists()] == ["live", "mine", "other"]
    finally:
        live.kill()
        live.wait()
