"""The HTTP API and the web page (FastAPI); jobs go to the queue, workers do the rest.

Routes: `POST /v1/videos` (JSON, or multipart with media in file parts: `image`, `last_image`, `keyframe` at the
frames of `keyframe_frames`, `video`), `GET /v1/videos` (newest
first, `limit`/`offset`), `GET /v1/videos/{id}`, `GET /v1/videos/{id}/content` (the MP4, range requests),
`GET /v1/videos/{id}/events` (server-sent events), `DELETE /v1/videos/{id}` (cancel), `/health`, `/metrics`
(Prometheus text), `/` (the page), `/openapi.json` and `/docs`. With a token every route wants
`Authorization: Bearer TOKEN` (or `?access_token=TOKEN`, for the page's video element and event stream, and for
`/docs`, which then reads the schema with it).
Requests are checked completely (fields, limits, the uploads are images or a video) before anything is queued; results are
found by job id only (the file name comes from the job record, never from the request).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPBearer

from .fields import (
    FIELDS,
    SINGLE_UPLOADS,
    UPLOADS,
    FieldError,
    Limits,
    Uploads,
    from_form,
    schema,
    settings_from_fields,
)
from .store import STATES, TERMINAL, JobStore, QueueFull, StoreUnavailable

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# Every error answer's body (`HTTPError`), declared on each route's responses so the schema says what comes back.
ERROR_BODY = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "what is wrong, and what is allowed"},
        "field": {"type": "string", "description": "the request field at fault, where one is"},
    },
    "required": ["detail"],
}


def _nullable(kind: str, description: str) -> dict[str, Any]:
    return {"anyOf": [{"type": kind}, {"type": "null"}], "description": description}


# A job as the API shows it (`job_view`): POST /v1/videos answers it, GET and DELETE /v1/videos/{id} too.
JOB_BODY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "32 hex digits"},
        "object": {"type": "string", "enum": ["video"]},
        "state": {"type": "string", "enum": list(STATES)},
        "progress": {"type": "number", "description": "step / steps, 0 to 1"},
        "step": {"type": "integer"},
        "steps": {
            "type": "integer",
            "description": "steps in all (an extension: over all its windows): the denoising steps and the decoder "
            "fit's after them, as the worker's pipeline counts them from the job's first step (before it, the "
            "denoising steps alone)",
        },
        "settings": {
            "type": "object",
            "description": "the request's fields, checked and filled (size, steps, seed)",
        },
        "warnings": {"type": "array", "items": {"type": "string"}, "description": "about the settings"},
        "created_at": {"type": "number", "description": "seconds since the epoch"},
        "started_at": _nullable("number", "seconds since the epoch, once a worker took it"),
        "finished_at": _nullable("number", "seconds since the epoch, once it ended"),
        "timings": {
            "type": "object",
            "properties": {
                "queued_seconds": {"type": "number"},
                "running_seconds": _nullable("number", "once it has started"),
                "step_seconds": _nullable("number", "once it has succeeded"),
            },
        },
        "attempts": {"type": "integer", "description": "times a worker took it"},
        "worker": _nullable("string", "the worker that runs or ran it"),
        "error": _nullable("string", "why it failed"),
        "content_url": _nullable("string", "where the MP4 is, once it has succeeded"),
    },
    "required": ["id", "object", "state", "progress", "settings", "warnings", "created_at", "content_url"],
}


def _job_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": JOB_BODY}}}


def _errors(**described: str) -> dict[int, dict[str, Any]]:
    """OpenAPI responses for error statuses (`e401="no or a wrong token"`), each with the error body."""
    content = {"application/json": {"schema": ERROR_BODY}}
    return {int(k[1:]): {"description": text, "content": content} for k, text in described.items()}


# Answers every route may give: without a token (when the server has one), and while the queue's database is down.
_COMMON = {
    "e401": "no or a wrong token (when the server has one)",
    "e503": "the queue's database cannot be reached (the next request connects again)",
}
FORM_OVERHEAD = 64 * 1024  # multipart headers and text fields on top of the uploads
MAX_KEYFRAMES = 31  # one per group of 4 frames of the longest video (121 frames)
EVENT_SECONDS = 3600.0  # an event stream ends after this long even if the job has not


@dataclass
class AppConfig:
    store: JobStore
    results: Path
    model: str = "small"
    limits: Limits = field(default_factory=Limits)
    token: str | None = None
    poll: float = 0.25  # seconds between the event stream's looks at the job
    # set as the server shuts down: event streams end
    stopping: threading.Event = field(default_factory=threading.Event)
    # what is wrong with this host's workers (None: nothing), for /health
    problem: Callable[[], str | None] = lambda: None


class HTTPError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def settings_warnings(model: str):
    """settings -> the warnings `generate` would print for them with `model` (words its tokenizer does not know, a
    size it was not trained at), worked out from the model's folder once; nothing is downloaded (a Hub id: none)."""
    from ..defaults import model_defaults, model_folder
    from ..vocabulary import folder_prompt_check

    defaults = model_defaults(model)
    check_prompt = folder_prompt_check(model_folder(model))

    def warnings(settings: dict[str, Any]) -> list[str]:
        prompt, height, width = settings.get("prompt"), settings.get("height"), settings.get("width")
        found = [check_prompt(prompt) if check_prompt is not None and isinstance(prompt, str) else None]
        if isinstance(height, int) and isinstance(width, int):
            found.append(defaults.size_warning(height, width, how="leave width and height empty"))
        return [w for w in found if w is not None]

    return warnings


def job_view(job: dict, warnings: list[str] | None = None) -> dict[str, Any]:
    """A job record as the API shows it (`warnings`: about its settings, `settings_warnings`)."""
    created, started, finished = job["created_at"], job["started_at"], job["finished_at"]
    steps = job["steps"] or 0
    return {
        "id": job["id"],
        "object": "video",
        "state": job["state"],
        "progress": round(job["step"] / steps, 4) if steps else 0.0,
        "step": job["step"],
        "steps": steps,
        "settings": job["settings"],
        "warnings": warnings or [],
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
        "timings": {
            "queued_seconds": (started or finished or time.time()) - created,
            "running_seconds": ((finished or time.time()) - started) if started else None,
            "step_seconds": job["step_seconds"],
        },
        "attempts": job["attempts"],
        "worker": job["worker"],
        "error": job["error"],
        "content_url": f"/v1/videos/{job['id']}/content" if job["state"] == "succeeded" else None,
    }


async def _read_limited(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPError(413, f"request body is {int(length)} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_form(request: Request, body: bytes, limits: Limits) -> tuple[dict[str, Any], Uploads]:
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        form = await replay.form(
            max_files=3 + MAX_KEYFRAMES, max_fields=len(FIELDS) + 1, max_part_size=limits.max_upload_bytes
        )
    except Exception as exc:
        raise HTTPError(400, f"the multipart body cannot be read: {exc}") from exc
    texts: dict[str, str] = {}
    files: dict[str, list[bytes]] = {role: [] for role in UPLOADS}
    for key, value in form.multi_items():
        if isinstance(value, str):
            if key in texts:  # one value per field (only keyframe files repeat)
                raise HTTPError(422, f"{key} is given more than once; each text field takes one value", key)
            texts[key] = value
        elif key in files:
            files[key].append(await value.read())
        else:
            raise HTTPError(422, f"unexpected file in field {key!r}; files go in {', '.join(UPLOADS)}", key)
    for role in SINGLE_UPLOADS:
        if len(files[role]) > 1:
            raise HTTPError(422, f"{role} takes one file, got {len(files[role])}", role)
    uploads = Uploads(
        image=next(iter(files["image"]), None),
        last_image=next(iter(files["last_image"]), None),
        keyframes=tuple(files["keyframe"]),
        video=next(iter(files["video"]), None),
    )
    if uploads.size > limits.max_upload_bytes:
        raise HTTPError(
            413, f"the uploads are {uploads.size} bytes; at most {limits.max_upload_bytes} are accepted"
        )
    try:
        return from_form(texts), uploads
    except FieldError as exc:
        raise HTTPError(422, str(exc), exc.field) from exc


def create_app(config: AppConfig) -> FastAPI:
    if config.token == "":  # an empty ?access_token= would match it
        raise ValueError("token must not be empty; None for no token")
    store, limits = config.store, config.limits
    app = FastAPI(
        title="motif-video",
        summary="Text-, image- and video-to-video generation with Motif-Video: a job queue with workers.",
        version="1",
        docs_url=None,
        # with a token, the schema says so: every route wants a bearer token (the docs' Authorize button takes it)
        dependencies=[Security(HTTPBearer(auto_error=False))] if config.token is not None else None,
    )
    page = resources.files("motif_video.serve").joinpath("page.html").read_text(encoding="utf-8")
    warnings = settings_warnings(config.model)

    def view(job: dict) -> dict[str, Any]:
        return job_view(job, warnings(job["settings"]))

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.field is not None:
            body["field"] = exc.field
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable):
        print(f"motif-video serve: {request.method} {request.url.path}: {exc}", file=sys.stderr, flush=True)
        return JSONResponse(
            {"detail": "the queue's database cannot be reached; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        """Anything else (a bug, a database error): 500 in the API's one error shape; the traceback goes to the
        server's log."""
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__})"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _query_error(request: Request, exc: RequestValidationError):
        """FastAPI's own check of a query parameter (`?limit=abc`), in the API's one error shape."""
        first = exc.errors()[0] if exc.errors() else {}
        name = str(first.get("loc", ("", "request"))[-1])
        detail = f"{name} {first.get('msg', 'is not valid').lower()}, got {first.get('input')!r}"
        return JSONResponse({"detail": detail, "field": name}, status_code=422)

    @app.middleware("http")
    async def _token(request: Request, call_next):
        if config.token is not None:
            header = request.headers.get("authorization", "")
            given = (
                header[7:]
                if header.lower().startswith("bearer ")
                else request.query_params.get("access_token")
            )
            if given is None or not hmac.compare_digest(given.encode(), config.token.encode()):
                return JSONResponse(
                    {"detail": "a valid bearer token is required (Authorization: Bearer TOKEN)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    def _job(job_id: str) -> dict:
        job = store.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            raise HTTPError(404, f"no job {job_id!r}")
        return job

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(access_token: str | None = None) -> HTMLResponse:
        """The schema browsed (Swagger UI); opened as `/docs?access_token=TOKEN` on a server with a token, it reads
        the schema with that token."""
        query = f"?access_token={quote(access_token, safe='')}" if config.token and access_token else ""
        return get_swagger_ui_html(
            openapi_url=f"{app.openapi_url}{query}",
            title="motif-video API",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get(
        "/health",
        summary="Liveness, queue length and workers seen",
        responses={503: {"description": "degraded, and no worker is seen: queued jobs will not run"}},
    )
    def health() -> JSONResponse:
        """status "ok", or "degraded" with the `problem` (this host's workers kept exiting); 503 when, moreover,
        no worker anywhere is seen."""
        counts, workers, problem = store.counts(), _live_workers(store), config.problem()
        body = {"status": "ok" if problem is None else "degraded", "problem": problem, "model": config.model,
                "queued": counts["queued"], "running": counts["running"], "workers": len(workers),
                "worker_ids": [w["id"] for w in workers]}  # fmt: skip
        return JSONResponse(body, status_code=503 if problem is not None and not workers else 200)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(_metrics_text(store), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post(
        "/v1/videos",
        status_code=202,
        summary="Queue a video (JSON, or multipart/form-data with media: image, last_image, keyframe, video)",
        responses={
            202: _job_answer("queued: the job (its Location header is its URL)"),
            **_errors(
                e400="a JSON body that does not parse",
                e413="body or uploads too large",
                e415="neither JSON nor multipart/form-data",
                e422="a bad field, or a value over the server's limits",
                e429="the queue is full",
                **_COMMON,
            ),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": schema(multipart=False)},
                    "multipart/form-data": {"schema": schema(multipart=True)},
                },
            }
        },
    )
    async def create(request: Request) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/json", "multipart/form-data"):
            raise HTTPError(
                415, f"content type must be application/json or multipart/form-data, got {kind!r}"
            )
        body = await _read_limited(request, limits.max_upload_bytes + FORM_OVERHEAD)
        uploads = Uploads()
        if kind == "application/json":
            try:
                fields = json.loads(body)
            except ValueError as exc:
                raise HTTPError(400, f"the body is not JSON: {exc}") from exc
            if not isinstance(fields, dict):
                raise HTTPError(422, "the body must be a JSON object of request fields")
        else:
            fields, uploads = await _parse_form(request, body, limits)
        settings = await run_in_threadpool(_settings, fields, uploads)
        try:
            steps = settings["steps"] * settings.get("windows", 1)  # an extension: steps in every window
            job = await run_in_threadpool(store.submit, settings, steps, uploads.parts(), limits.max_queue)
        except QueueFull:
            raise HTTPError(429, f"the queue is full ({limits.max_queue} jobs); try again later") from None
        return JSONResponse(view(job), status_code=202, headers={"Location": f"/v1/videos/{job['id']}"})

    def _settings(fields: dict[str, Any], uploads: Uploads) -> dict[str, Any]:
        try:
            return settings_from_fields(fields, model=config.model, limits=limits, uploads=uploads)
        except FieldError as exc:
            raise HTTPError(422, str(exc), exc.field) from exc

    @app.get(
        "/v1/videos", summary="Jobs, newest first", responses=_errors(e422="a bad limit or offset", **_COMMON)
    )
    def list_videos(limit: int = 20, offset: int = 0) -> dict[str, Any]:
        if not 1 <= limit <= 100:
            raise HTTPError(422, f"limit must be in 1..100, got {limit}", "limit")
        if offset < 0:
            raise HTTPError(422, f"offset must be >= 0, got {offset}", "offset")
        rows, total = store.page(limit, offset)
        following = offset + len(rows)
        return {"object": "list", "data": [view(r) for r in rows], "total": total,
                "next_offset": following if following < total else None}  # fmt: skip

    @app.get(
        "/v1/videos/{job_id}",
        summary="A job: state, progress, settings, timings, error",
        response_model=None,  # the schema is JOB_BODY
        responses={200: _job_answer("the job"), **_errors(e404="no such job", **_COMMON)},
    )
    def get_video(job_id: str) -> dict[str, Any]:
        return view(_job(job_id))

    @app.delete(
        "/v1/videos/{job_id}",
        summary="Cancel a queued or running job",
        response_model=None,  # the schema is JOB_BODY
        responses={
            200: _job_answer("the job, cancelled"),
            **_errors(e404="no such job", e409="the job has already ended", **_COMMON),
        },
    )
    def cancel_video(job_id: str) -> dict[str, Any]:
        before = _job(job_id)
        if before["state"] in TERMINAL:
            raise HTTPError(409, f"job {job_id} has already ended ({before['state']})")
        return view(store.cancel(job_id))  # type: ignore[arg-type]

    @app.get(
        "/v1/videos/{job_id}/content",
        summary="The MP4 (range requests supported)",
        response_class=FileResponse,
        responses={
            200: {"content": {"video/mp4": {}}},
            **_errors(
                e404="no such job",
                e409="the job has not succeeded",
                e410="the job succeeded but its MP4 is no longer in the results folder",
                **_COMMON,
            ),
        },
    )
    def video_content(job_id: str) -> FileResponse:
        job = _job(job_id)
        if job["state"] != "succeeded":
            raise HTTPError(409, f"job {job_id} is {job['state']}; the video exists once it has succeeded")
        path = config.results / job["result"]
        if not path.is_file():
            raise HTTPError(410, f"the video of job {job_id} is no longer in the results folder")
        return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")

    @app.get(
        "/v1/videos/{job_id}/events",
        summary="Progress as server-sent events (ends when the job does, or the server stops)",
        responses=_errors(e404="no such job", **_COMMON),
    )
    async def video_events(job_id: str, request: Request) -> StreamingResponse:
        await run_in_threadpool(_job, job_id)

        async def stream():
            last, deadline = None, time.monotonic() + EVENT_SECONDS
            while time.monotonic() < deadline:
                try:
                    job = await run_in_threadpool(store.get, job_id)
                except StoreUnavailable:  # the database is restarting: look again at the next poll
                    await asyncio.sleep(config.poll)
                    continue
                shown = view(job)  # type: ignore[arg-type]
                key = (shown["state"], shown["step"])
                if key != last:
                    last = key
                    yield f"event: progress\ndata: {json.dumps(shown)}\n\n"
                if shown["state"] in TERMINAL:
                    yield f"event: end\ndata: {json.dumps(shown)}\n\n"
                    return
                if config.stopping.is_set() or await request.is_disconnected():
                    return
                await asyncio.sleep(config.poll)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return app


def _live_workers(store: JobStore, stale: float = 120.0) -> list[dict]:
    now = time.time()
    return [w for w in store.workers() if now - w["seen_at"] < stale]


def _metrics_text(store: JobStore) -> str:
    import resource

    counts = store.counts()
    steps = sorted(store.recent_step_seconds())
    lines = [
        "# HELP motif_video_queue_length Jobs waiting for a worker.",
        "# TYPE motif_video_queue_length gauge",
        f"motif_video_queue_length {counts['queued']}",
        "# HELP motif_video_jobs Jobs by state.",
        "# TYPE motif_video_jobs gauge",
        *(f'motif_video_jobs{{state="{state}"}} {n}' for state, n in counts.items()),
        "# HELP motif_video_step_seconds Seconds per denoising step over the last 100 finished jobs.",
        "# TYPE motif_video_step_seconds summary",
    ]
    for q in (0.5, 0.9, 0.99):
        value = steps[min(len(steps) - 1, int(q * len(steps)))] if steps else float("nan")
        lines.append(f'motif_video_step_seconds{{quantile="{q}"}} {value:.6g}')
    lines += [
        f"motif_video_step_seconds_sum {sum(steps):.6g}",
        f"motif_video_step_seconds_count {len(steps)}",
    ]
    workers = _live_workers(store)
    lines += [
        "# HELP motif_video_workers Workers seen in the last two minutes.",
        "# TYPE motif_video_workers gauge",
        f"motif_video_workers {len(workers)}",
        "# HELP motif_video_worker_peak_memory_bytes Peak memory of each worker (GPU memory on CUDA, else RSS).",
        "# TYPE motif_video_worker_peak_memory_bytes gauge",
    ]
    for w in workers:
        if w["peak_memory_gb"] is not None:
            labels = f'worker="{w["id"]}",device="{w["device"]}"'
            lines.append(
                f"motif_video_worker_peak_memory_bytes{{{labels}}} {int(w['peak_memory_gb'] * 2**30)}"
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lines += [
        "# HELP motif_video_server_peak_memory_bytes Peak resident memory of the API process.",
        "# TYPE motif_video_server_peak_memory_bytes gauge",
        f"motif_video_server_peak_memory_bytes {rss}",
    ]
    return "\n".join(lines) + "\n"
