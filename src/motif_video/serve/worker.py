"""A worker process: one warm pipeline, jobs from the queue, one MP4 per job.

The pipeline is loaded once (`generation.prepare_pipeline`); each job runs the library's own per-video calls
(`render_latents`, `write_video`; an extension job `extension.write_extension`), so a job's MP4 is the one
`motif-video generate` (or `extend`) writes for the same settings, media and seed. Every sampling step and every
step of the decoder fit after them records progress (of the steps in all as the pipeline counts them; an extension's
over all its windows) and extends the job's lease; a thread renews the lease while the VAE decodes and the file is
written. A cancelled job (or one whose lease was lost) stops after the current step, with nothing after it (no more
decoder fit, no decode or file). The MP4 is written under a temporary name in the results folder, renamed, and only then recorded.
While the database cannot be reached the worker waits for it: a finished job is recorded once it is back (a worker
stopped first removes the file and leaves the job to run again when its lease ends).
On SIGTERM/SIGINT the worker stops after the current step and gives its job back to the queue; so it does, with
`--parent PID`, once that process is no longer its parent (`motif-video serve` passes its own pid: its workers do
not outlive it, even when it is killed outright).

Run by `motif-video serve` (one per GPU, or one on the CPU), or alone on another machine:
`python -m motif_video.serve.worker --database postgresql://... --results /shared/results --model small`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from .fields import to_request
from .store import JobStore, StoreUnavailable, open_store

JOB_DIR_PREFIX = "motif-video-job-"  # + pid: a job's uploads, in the temporary folder while it runs


def remove_stale_job_dirs(root: Path | None = None) -> int:
    """Remove the job folders of workers of this host that are gone (killed outright, so their own cleanup never
    ran); returns how many went."""
    import shutil

    from .store import process_alive

    removed = 0
    for folder in Path(root or tempfile.gettempdir()).glob(f"{JOB_DIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(JOB_DIR_PREFIX).split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class Worker:
    def __init__(
        self,
        store: JobStore,
        results: Path,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        lease: float = 30.0,
        poll: float = 0.2,
    ):
        self.store, self.results, self.model = store, Path(results), model
        self.device, self.dtype, self.lease, self.poll = device, dtype, lease, poll
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self._pipes: dict[str, object] = {}

    # ----------------------------------------------------------------------------------------------- pipeline
    def _plan(self, settings: dict | None, output: Path, media: dict[str, list[Path]]):
        """The library's checked plan for a job, its media on disk (or, without settings, for loading the
        pipeline)."""
        from ..generation import plan_generation
        from ..options import parse_request

        server = {"model": self.model, "device": self.device, "dtype": self.dtype, "output": output}
        if settings is None:
            request = parse_request({"prompts": ["warm up"], **server})
        else:
            request = to_request(settings, media, **server)
        return plan_generation(request, world_size=1)

    def load(self) -> None:
        """Load the text-to-video pipeline (the warm model); image-to-video shares its components."""
        from ..generation import prepare_pipeline

        plan = self._plan(None, self.results / "probe.mp4", {})
        self.device, self.dtype = plan.device, plan.dtype
        self._pipes["t2v"], _ = prepare_pipeline(plan, show_progress=False)

    def pipeline(self, conditioned: bool):
        """The warm text-to-video pipeline, or the image-to-video one (sharing its components) for a job that
        conditions frames."""
        if conditioned and "i2v" not in self._pipes:
            from ..pipelines import MotifVideoImageToVideoPipeline

            self._pipes["i2v"] = MotifVideoImageToVideoPipeline.from_pipe(self._pipes["t2v"])
            self._pipes["i2v"].set_progress_bar_config(disable=True)
        return self._pipes["i2v" if conditioned else "t2v"]

    # ----------------------------------------------------------------------------------------------------- loop
    def run(self, max_jobs: int | None = None) -> int:
        """Take and run jobs until stopped (or `max_jobs` are done); returns the number run."""
        import torch

        remove_stale_job_dirs()
        registration = (self.id, socket.gethostname(), os.getpid(), self.device, self.model)
        done, last_seen = 0, 0.0
        try:
            if not self._stored(self.store.register_worker, *registration):
                return done
            while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
                try:
                    if time.time() - last_seen > self.lease / 3:
                        self.store.worker_seen(self.id)
                        last_seen = time.time()
                    job = self.store.claim(self.id, self.lease)
                except StoreUnavailable as exc:  # the database restarts: wait for it, as for an empty queue
                    self._unavailable(exc)
                    continue
                if job is None:
                    self.stopping.wait(self.poll)
                    continue
                self.run_job(job, torch)
                done += 1
        finally:
            with contextlib.suppress(StoreUnavailable):  # else its row goes once it is no longer seen
                self.store.remove_worker(self.id)
        return done

    def _unavailable(self, exc: StoreUnavailable) -> None:
        """Say that the database cannot be reached and wait a moment before the next try."""
        print(f"worker {self.id}: {exc}; trying again", file=sys.stderr, flush=True)
        self.stopping.wait(max(self.poll, 1.0))

    def _stored(self, call, *args) -> tuple | None:
        """`call(*args)` once the database takes it, tried again while it cannot be reached: `(result,)`, or None
        when the worker is stopped first."""
        while True:
            try:
                return (call(*args),)
            except StoreUnavailable as exc:
                if self.stopping.is_set():
                    return None
                self._unavailable(exc)

    def run_job(self, job: dict, torch) -> None:
        job_id, claim, settings = job["id"], job["claim"], job["settings"]
        keeper = _LeaseKeeper(self.store, job_id, claim, self.lease, self.id)
        keeper.start()
        tmpdir = tempfile.TemporaryDirectory(prefix=f"{JOB_DIR_PREFIX}{os.getpid()}-")
        try:
            media: dict[str, list[Path]] = {}
            for position, (role, data) in enumerate(self.store.media(job_id)):
                path = Path(tmpdir.name) / f"{position}-{role}"
                path.write_bytes(data)
                media.setdefault(role, []).append(path)
            # one file per claim: a worker that lost its lease cannot touch the file of the one that has the job now
            final = self.results / f"{job_id}-{claim}.mp4"
            plan = self._plan(settings, final, media)
            if torch.device(plan.device).type == "cuda":
                torch.cuda.reset_peak_memory_stats(plan.device)
            stopped, windows = threading.Event(), settings.get("windows") or 1
            on_step = self.step_callback(job_id, claim, stopped, windows)
            start = time.perf_counter()
            pipe = None
            try:
                if settings.get("extend_seconds") is not None:
                    pipe = self._extend(plan, settings, media["video"][0], final, on_step, job_id)
                else:
                    pipe = self._generate(plan, final, on_step, stopped)
            except _Stopped:
                pass
            elapsed = time.perf_counter() - start
            if stopped.is_set():
                final.unlink(missing_ok=True)
                if self.stopping.is_set():
                    self.store.release(job_id, claim)
                return  # cancelled, or the lease went to another worker: nothing is kept
            # per denoising step: not the job's `steps`, which its progress (this claim's, or an earlier one's) made
            # sampling and decoder-fit steps
            step_seconds = elapsed / max(1, windows * (pipe.num_timesteps or 0))
            peak = _peak_memory_gb(torch, plan.device)
            resolved = filled_settings(settings, pipe.last_run)
            # recorded once the database takes it; a worker stopped first leaves the job to its lease's end
            recorded = self._stored(
                self.store.complete, job_id, claim, final.name, step_seconds, peak, resolved
            )
            if not (recorded and recorded[0]):
                final.unlink(missing_ok=True)  # cancelled (or the lease lost) while the file was written
                return
            with contextlib.suppress(StoreUnavailable):
                self.store.worker_seen(self.id, peak, done=1)
        except StoreUnavailable as exc:  # not the job's fault: it runs again once its lease ends
            print(f"worker {self.id}: job {job_id} left to its lease: {exc}", file=sys.stderr, flush=True)
        except Exception as exc:
            self._stored(self.store.fail, job_id, claim, f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            keeper.stop()
            tmpdir.cleanup()

    def step_callback(self, job_id: str, claim: str, stopped: threading.Event, windows: int = 1):
        """The pipelines' callback for one job after each sampling step and each decoder-fit step (their
        `callback_on_step_end` and `callback_on_fit_step`): records progress over both, of the steps in all (a
        window's sampling and fit steps as its pipeline counts them, `num_timesteps` and `num_fit_steps`, times the
        extension's `windows`), and renews the lease; once the job is cancelled, its lease lost or the worker
        stopping, it sets `stopped` and raises `_Stopped` at once, so that no more decoder fit, no decode and no file
        follow for a job nobody will keep."""
        from ..extension import steps_in_all

        steps = itertools.count(1)

        def on_step(pipe, *_):
            step = next(steps)
            total = steps_in_all(pipe, windows)
            if stopped.is_set() or self.stopping.is_set() or not self._progress(job_id, claim, step, total):
                stopped.set()
                raise _Stopped
            return {}

        return on_step

    def _progress(self, job_id: str, claim: str, step: int, steps: int) -> bool:
        """Record a step of `steps`; while the database is unreachable the job goes on (the lease keeper renews its
        lease once it is back)."""
        try:
            return self.store.progress(job_id, claim, step, self.lease, steps)
        except StoreUnavailable:
            return True

    def _generate(self, plan, final: Path, on_step, stopped: threading.Event):
        """One video as `motif-video generate` makes it; nothing is written when it was stopped. Returns the
        pipeline that made it."""
        from ..generation import condition_inputs, render_latents, write_video
        from ..options import conditioned

        pipe = self.pipeline(conditioned(plan.request))
        inputs = condition_inputs(plan.request)
        latents = render_latents(pipe, plan, 0, callback=on_step, inputs=inputs, fit_callback=on_step)
        if not stopped.is_set():
            write_video(pipe, latents, final, plan)
        return pipe

    def _extend(self, plan, settings: dict, clip: Path, final: Path, on_step, job_id: str):
        """The uploaded clip extended as `motif-video extend` extends it (`extension.write_extension`); returns the
        pipeline that made its windows."""
        from ..extension import check_clip, clip_extension, write_extension

        info = check_clip(clip)
        extension = clip_extension(
            info,
            settings["extend_seconds"],
            plan.request.num_frames,
            settings["overlap"],
            settings["crossfade"],
        )
        prompts = settings.get("window_prompts") or [plan.request.prompts[0]]
        pipe = self.pipeline(True)
        write_extension(pipe, plan.request, extension, clip, prompts, plan.seed, final, info["fps"],
                        callback=on_step, source=f"the upload of job {job_id}", fit_callback=on_step)  # fmt: skip
        return pipe


def filled_settings(settings: dict, run) -> dict:
    """A finished job's settings with the guidance and shift its request left null (the model's configs decided)
    filled in with what the run used (`run`: the pipeline's `last_run`), so that the same settings submitted again
    make the same video: a mode only where one of the request's modes ran (a student's embedded guidance, or a
    folder's diffusers guider running its own protocol, fill the scale only)."""
    from ..choices import GUIDANCE_MODES
    from ..replay import run_guidance

    mode, scale = run_guidance(run)
    resolved = {"guidance_scale": scale, "shift": run.sampler.shift}
    if mode in GUIDANCE_MODES:
        resolved["guidance"] = mode
    return {**settings, **{k: v for k, v in resolved.items() if settings.get(k) is None}}


class _Stopped(Exception):
    """Raised from the step callback: the job was cancelled or its lease lost (or the worker is stopping)."""


class _LeaseKeeper(threading.Thread):
    """Renews a job's lease (and marks its worker seen) every lease/3 seconds until stopped; it dies with the
    process, so the lease of a killed worker expires."""

    def __init__(self, store: JobStore, job_id: str, claim: str, lease: float, worker: str):
        super().__init__(daemon=True)
        self.store, self.job_id, self.claim, self.lease, self.worker = store, job_id, claim, lease, worker
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.lease / 3):
                try:
                    if not self.store.renew(self.job_id, self.claim, self.lease):
                        return
                    self.store.worker_seen(self.worker)
                except StoreUnavailable:  # the database restarts: renew at the next turn
                    continue
        finally:
            self.store.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.lease)


def _peak_memory_gb(torch, device: str) -> float:
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m motif_video.serve.worker", description=__doc__.split("\n")[0])
    p.add_argument(
        "--database", default=None, help="sqlite:///PATH or postgresql://... (default: RESULTS/jobs.sqlite3)"
    )
    p.add_argument("--results", type=Path, required=True, help="the results folder (shared by every host)")
    p.add_argument("--model", default="small")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--lease", type=float, default=30.0, help="seconds a job stays claimed without a renewal")
    p.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs (default: never)")
    p.add_argument(
        "--parent",
        type=int,
        default=None,
        metavar="PID",
        help="stop, as on SIGTERM, once process PID is no longer this worker's parent (default: never)",
    )
    return p


def watch_parent(parent: int, stopping: threading.Event, interval: float = 1.0) -> threading.Thread:
    """A daemon thread that sets `stopping` once this process's parent is no longer `parent` (it exited, or was
    killed, and this process was handed to another)."""

    def watch():
        while True:
            if os.getppid() != parent:
                stopping.set()
                # the log may have gone with the parent (a closed pipe): stopping came first
                with contextlib.suppress(OSError):
                    print(f"worker {os.getpid()}: parent {parent} is gone", file=sys.stderr, flush=True)
                return
            if stopping.wait(interval):
                return

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    from ..cli import quiet_known_notices

    args = build_parser().parse_args(argv)
    quiet_known_notices()  # as the command does: the libraries' import notices are not the service's to show
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    store = open_store(args.database, args.results)
    worker = Worker(store, args.results, args.model, args.device, args.dtype, args.lease)

    def stop(signum, frame):
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.parent is not None:
        watch_parent(args.parent, worker.stopping)
    worker.load()
    print(f"worker {worker.id} ready: {args.model} on {worker.device} ({worker.dtype})", flush=True)
    worker.run(args.max_jobs)
    store.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # everything is recorded and closed; skip the interpreter's slow teardown of torch


if __name__ == "__main__":
    raise SystemExit(main())
