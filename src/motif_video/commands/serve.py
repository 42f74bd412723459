"""`motif-video serve`: an HTTP API, a job queue in a database and warm workers (see motif_video.serve)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..bounds import at_least, within
from .numbers import COUNT, POSITIVE, THREADS, number

PORT = number(int, within(1, 65535))
TOKEN_ENV = "MOTIF_VIDEO_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="video generation service: HTTP API, job queue, workers, web page",
        description="Serve a model over HTTP: POST /v1/videos queues a job, workers (one per GPU, or one on the "
        "CPU) keep the pipeline warm and run the jobs; the page at / submits prompts and plays the results. "
        "Needs the serve extra: pip install 'motif-video[serve]'.",
    )
    p.add_argument(
        "--model", default="small", help="shipped model name, local folder or Hub id (default: small)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=PORT, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--workers",
        type=number(int, at_least(0)),
        default=None,
        help="worker processes on this machine (default: one per GPU, else one on the CPU); 0: API only",
    )
    p.add_argument(
        "--database",
        default=None,
        help="sqlite:///PATH or postgresql://USER@HOST/DB, the queue shared by every host "
        "(default: RESULTS/jobs.sqlite3)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("motif-video-results"),
        help="folder for the MP4s (shared by every host) (default: motif-video-results)",
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"bearer token every request must carry; not empty (default: the {TOKEN_ENV} environment variable; "
        "unset or empty, none)",
    )
    p.add_argument(
        "--device", default="auto", help="workers' device: auto, cpu, cuda or cuda:N (default: auto)"
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="workers' dtype (default: auto: bfloat16 on CUDA, float32 on the CPU)",
    )
    p.add_argument(
        "--threads",
        type=THREADS,
        default=0,
        help="torch threads per CPU worker; 0: the cores shared among the CPU workers (default: 0)",
    )
    p.add_argument(
        "--lease",
        type=POSITIVE,
        default=30.0,
        help="seconds a running job stays claimed without a sign of life from its worker; then another worker "
        "takes it (default: 30)",
    )
    p.add_argument(
        "--no-api", action="store_true", help="run only workers on this host (default: API and workers)"
    )
    limits = p.add_argument_group("limits (a request over one gets 422; a full queue 429; a big upload 413)")
    limits.add_argument("--max-width", type=COUNT, default=1280, help="(default: 1280)")
    limits.add_argument("--max-height", type=COUNT, default=1280, help="(default: 1280)")
    limits.add_argument("--max-frames", type=COUNT, default=121, help="(default: 121)")
    limits.add_argument("--max-steps", type=COUNT, default=100, help="(default: 100)")
    limits.add_argument("--max-prompt-chars", type=COUNT, default=2000, help="(default: 2000)")
    limits.add_argument(
        "--max-upload-mb",
        type=POSITIVE,
        default=50.0,
        help="a job's uploads together: images and input video (default: 50)",
    )
    limits.add_argument(
        "--max-extend-seconds", type=POSITIVE, default=60.0, help="length of an extended video (default: 60)"
    )
    limits.add_argument("--max-queue", type=COUNT, default=1000, help="queued jobs (default: 1000)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import resolve_folder
    from ..options import DEVICE_PATTERN
    from ..serve.fields import Limits
    from ..serve.server import ServeConfig, serve

    try:
        if not args.no_api:
            import fastapi  # noqa: F401
            import python_multipart  # noqa: F401
            import uvicorn  # noqa: F401
        if args.database is not None and args.database.startswith("postgres"):
            import psycopg  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"serve needs its extra: pip install 'motif-video[serve]' ({exc})") from exc
    if args.token == "":  # as ?access_token= (empty) would match it, while MOTIF_VIDEO_TOKEN="" means none
        raise ValueError(
            f"--token must not be empty; leave it out (and {TOKEN_ENV} unset or empty) for no token"
        )
    if args.no_api and args.workers == 0:
        raise ValueError("--no-api with --workers 0 would run nothing")
    # what the workers would otherwise find out by exiting, one after the other, while the API takes jobs: a Hub
    # id is looked up (its model_index.json fetched, or found in the cache), so an unknown one exits here
    resolve_folder(args.model, allow_patterns=["model_index.json"])
    if Path(args.model).expanduser().is_dir():  # and a local folder's parts, without loading them
        from ..model_folder import check_model_folder

        check_model_folder(Path(args.model).expanduser())
    if not DEVICE_PATTERN.fullmatch(args.device):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    if args.database is not None and not args.database.startswith(
        ("sqlite:///", "postgresql://", "postgres://")
    ):
        raise ValueError(f"--database must be sqlite:///PATH or postgresql://..., got {args.database!r}")
    limits = Limits(
        max_width=args.max_width,
        max_height=args.max_height,
        max_frames=args.max_frames,
        max_steps=args.max_steps,
        max_prompt_chars=args.max_prompt_chars,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_extend_seconds=args.max_extend_seconds,
        max_queue=args.max_queue,
    )
    config = ServeConfig(
        model=args.model,
        host=args.host,
        port=args.port,
        workers=args.workers,
        database=args.database,
        results=args.results,
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        lease=args.lease,
        api=not args.no_api,
        limits=limits,
    )
    return serve(config)
