"""`motif-video serve` end to end: a real server on 127.0.0.1 with two CPU workers and the small model, on SQLite
and on PostgreSQL (the same tests for both).

The module's server starts on a queue that an API-only server (no workers, a queue of 4) filled and was stopped
with: those jobs must complete after the restart."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from motif_video.cli import KNOWN_NOTICES
from motif_video.cli import main as cli_main
from motif_video.pipelines.export import read_mp4_frames, read_mp4_metadata

from .conftest import PROMPT, TINY, TOKEN, Server, generate_reference, httpx, wait_for

LONG = {"width": 64, "height": 64, "num_frames": 33, "steps": 100}  # ~15 s on one thread: time to act mid-job
SMALL_FIT = 50  # the small model's decoder_fit_steps: Adam steps per fitted latent frame, in a job's steps
UPLOAD_LIMIT_MB = 0.05


@pytest.fixture(scope="module")
def before_restart(database, tmp_path_factory):
    """Four jobs queued on an API-only server with a queue of 4 (a fifth gets 429), then the server stopped."""
    results = tmp_path_factory.mktemp("results")
    first = Server(results, database, "--max-queue", "4").start(workers=0)
    ids = [first.submit(seed=i, **TINY)["id"] for i in range(4)]
    full = first.client.post("/v1/videos", json={"prompt": PROMPT, **TINY})
    states = [first.job(i)["state"] for i in ids]
    total = first.total()
    assert first.stop() == 0, first.log.read_text()[-3000:]
    return results, ids, full, states, total


@pytest.fixture(scope="module")
def server(database, before_restart):
    results = before_restart[0]
    s = Server(results, database, "--lease", "2", "--max-upload-mb", str(UPLOAD_LIMIT_MB)).start(workers=2)
    yield s
    assert s.stop() == 0, s.log.read_text()[-3000:]


def test_queued_jobs_survive_a_restart_and_a_full_queue_answers_429(server, before_restart):
    _, ids, full, states, total = before_restart
    assert full.status_code == 429, full.text
    assert states == ["queued"] * 4 and total == 4
    done = [server.wait_state(i, ("succeeded", "failed", "cancelled"), timeout=120) for i in ids]
    assert [d["state"] for d in done] == ["succeeded"] * 4, [d["error"] for d in done]
    assert [d["attempts"] for d in done] == [1] * 4
    for job_id in ids:
        assert server.client.get(f"/v1/videos/{job_id}/content").status_code == 200


def _png(size=(32, 32), colour=(200, 30, 30)) -> bytes:
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _content(server: Server, job_id: str, path):
    response = server.client.get(f"/v1/videos/{job_id}/content")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    path.write_bytes(response.content)
    return read_mp4_frames(path)


def test_job_mp4_equals_generate(server, tmp_path):
    """Text-to-video, a first frame, last frame + keyframe, and video-to-video (on the first job's MP4): each job's
    MP4 has the frames `generate` writes for the same settings and media. A job's steps count its decoder fit too
    (before: its sampling steps alone, through which the fit after them ran at 100%)."""
    t2v = server.submit(seed=5, **TINY)
    image = tmp_path / "first.png"
    image.write_bytes(_png())
    last, key = tmp_path / "last.png", tmp_path / "key.png"
    last.write_bytes(_png(colour=(30, 30, 200)))
    key.write_bytes(_png(colour=(30, 200, 30)))
    form = {"prompt": PROMPT, **{k: str(v) for k, v in TINY.items()}}
    i2v = server.client.post(
        "/v1/videos",
        data={**form, "seed": "6"},
        files={"image": ("first.png", image.read_bytes(), "image/png")},
    )
    assert i2v.status_code == 202, i2v.text
    i2v = i2v.json()
    conditions = server.client.post(
        "/v1/videos",
        data={**form, "seed": "7", "num_frames": "9", "keyframe_frames": "3"},
        files=[("last_image", ("last.png", last.read_bytes(), "image/png")),
               ("keyframe", ("key.png", key.read_bytes(), "image/png"))],
    )  # fmt: skip
    assert conditions.status_code == 202, conditions.text
    conditions = conditions.json()
    assert t2v["settings"]["seed"] == 5 and i2v["settings"]["image"] is True
    assert (conditions["settings"]["last_image"], conditions["settings"]["keyframe"]) == (True, [3])
    # the fit: the repainted frame 0 (no image gives it), the latent frame of each given frame
    jobs = [
        (t2v, generate_reference(tmp_path / "t2v.mp4", 5, **TINY), SMALL_FIT),
        (i2v, generate_reference(tmp_path / "i2v.mp4", 6, image, **TINY), SMALL_FIT),
        (conditions, generate_reference(tmp_path / "conditions.mp4", 7, None, "--last-image", str(last),
                                        "--keyframe", f"{key}@3", **{**TINY, "num_frames": 9}), 3 * SMALL_FIT),
    ]  # fmt: skip
    for job, reference, fit in jobs:
        done = server.wait_state(job["id"], ("succeeded", "failed"))
        assert done["state"] == "succeeded", done["error"]
        assert done["progress"] == 1.0 and done["step"] == done["steps"] == TINY["steps"] + fit
        served = _content(server, job["id"], tmp_path / f"{job['id']}.mp4")
        # the guidance and shift the request left null are the job's once it has run: what its video was made with
        made_with = read_mp4_metadata(tmp_path / f"{job['id']}.mp4")["resolved"]
        assert job["settings"]["guidance_scale"] is job["settings"]["shift"] is None
        assert {k: done["settings"][k] for k in ("guidance", "guidance_scale", "shift")} == {
            k: made_with[k] for k in ("guidance", "guidance_scale", "shift")
        }
        expected = read_mp4_frames(reference)
        assert served.shape == expected.shape == (job["settings"]["num_frames"], 32, 32, 3)
        np.testing.assert_array_equal(served, expected)
    # video-to-video on the first job's video: its frame count comes from the upload, its size is the small
    # model's one (64x64: a 32x32 upload is stretched to it, as for an image)
    source = tmp_path / f"{t2v['id']}.mp4"
    v2v = server.client.post(
        "/v1/videos",
        data={"prompt": PROMPT, "seed": "8", "steps": "2", "strength": "0.5"},
        files={"video": ("in.mp4", source.read_bytes(), "video/mp4")},
    )
    assert v2v.status_code == 202, v2v.text
    v2v = v2v.json()
    assert v2v["settings"]["video"] is True and v2v["settings"]["strength"] == 0.5
    assert (v2v["settings"]["num_frames"], v2v["settings"]["width"]) == (TINY["num_frames"], 64)
    reference = generate_reference(tmp_path / "v2v.mp4", 8, None, "--video", str(source), "--strength", "0.5",
                                   steps=2)  # fmt: skip
    done = server.wait_state(v2v["id"], ("succeeded", "failed"))
    assert done["state"] == "succeeded", done["error"]
    np.testing.assert_array_equal(
        _content(server, v2v["id"], tmp_path / "v2v-served.mp4"), read_mp4_frames(reference)
    )
    # extension of the same video (at 16 fps, the small model's rate) to 13 frames: two windows of 9, each on 5
    extension = {"extend_seconds": "0.8125", "overlap": "5", "num_frames": "9", "steps": "2", "seed": "9"}
    story = f"{PROMPT}\n\na green square moving right on a black background\n"  # one line per window
    extend = server.client.post(
        "/v1/videos",
        data={"prompt": story, **extension},
        files={"video": ("in.mp4", source.read_bytes(), "video/mp4")},
    )
    assert extend.status_code == 202, extend.text
    extend = extend.json()
    assert (extend["settings"]["windows"], extend["settings"]["total_frames"], extend["steps"]) == (2, 13, 4)
    assert extend["settings"]["window_prompts"] == [
        PROMPT,
        "a green square moving right on a black background",
    ]
    reference, prompt_file = tmp_path / "extended.mp4", tmp_path / "story.txt"
    prompt_file.write_text(story)
    argv = ["extend", str(source), "--prompt-file", str(prompt_file), "--seconds", "0.8125", "--overlap", "5", "--num-frames", "9",
            "--steps", "2", "--seed", "9", "--model", "small", "--threads", "1", "--device", "cpu",
            "--output", str(reference)]  # fmt: skip
    assert cli_main(argv) == 0
    done = server.wait_state(extend["id"], ("succeeded", "failed"))
    assert done["state"] == "succeeded", done["error"]
    assert done["step"] == done["steps"] == 2 * (2 + 2 * SMALL_FIT)  # each window fits its 5 given frames' 2
    served = _content(server, extend["id"], tmp_path / "extended-served.mp4")
    assert served.shape == (13, 64, 64, 3)
    np.testing.assert_array_equal(served, read_mp4_frames(reference))


BAD_FIELDS = [
    ({"prompt": None}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"negative_prompt": "x" * 2001}, "negative_prompt"),
    ({"width": 40}, "width"),
    ({"width": 2048}, "width"),
    ({"height": 0}, "height"),
    ({"height": "tall"}, "height"),
    ({"num_frames": 6}, "num_frames"),
    ({"num_frames": 125}, "num_frames"),
    ({"steps": 0}, "steps"),
    ({"steps": 101}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"guidance": "more"}, "guidance"),
    ({"guidance_scale": -1}, "guidance_scale"),
    ({"guidance_batching": "sometimes"}, "guidance_batching"),
    ({"shift": 0}, "shift"),
    ({"fps": 0}, "fps"),
    ({"seed": -1}, "seed"),
    ({"cache_threshold": -0.5}, "cache_threshold"),
    ({"keep_first_frame": True}, "keep_first_frame"),  # needs an image
    ({"keep_first_frame": "perhaps"}, "keep_first_frame"),
    ({"strength": 0.5}, "strength"),  # needs an input video
    ({"image": "first.png"}, "image"),  # media are uploads, not paths
    ({"model": "other"}, "model"),  # a worker-level option, not a request field
    ({"output": "/etc/passwd"}, "output"),
]


def test_bad_requests_are_refused_and_nothing_is_queued(server):
    client, before = server.client, server.total()
    for change, field in BAD_FIELDS:
        body = {"prompt": PROMPT, **TINY, **change}
        body = {k: v for k, v in body.items() if v is not None}
        response = client.post("/v1/videos", json=body)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["field"] == field, (change, response.json())
        assert field.split("_")[0] in response.json()["detail"], response.json()
    # not JSON, not an object, not a supported content type
    assert (
        client.post("/v1/videos", content=b"{", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert client.post("/v1/videos", json=[PROMPT]).status_code == 422
    # a query parameter FastAPI itself checks answers in the API's one error shape
    listed = client.get("/v1/videos", params={"limit": "abc"})
    assert listed.status_code == 422 and listed.json()["field"] == "limit", listed.text
    assert "'abc'" in listed.json()["detail"], listed.text
    # numbers JSON cannot hold (Python's parser reads 1e999 as inf, NaN as nan): refused, nothing queued
    for text, field in (("1e999", "guidance_scale"), ("NaN", "shift"), ("-Infinity", "condition_guidance")):
        raw = f'{{"prompt": "{PROMPT}", "{field}": {text}}}'.encode()
        response = client.post("/v1/videos", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["field"] == field, (text, response.text)
        assert "must be a finite number" in response.json()["detail"], response.text
    assert client.post("/v1/videos", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    # uploads: not an image, too big (checked before anything is queued)
    form = {"prompt": PROMPT, **{k: str(v) for k, v in TINY.items()}}
    not_image = client.post(
        "/v1/videos", data=form, files={"image": ("x.png", b"not an image" * 10, "image/png")}
    )
    assert not_image.status_code == 422 and not_image.json()["field"] == "image", not_image.text
    png = _png()
    for files, field in (
        ([("keyframe", ("k.png", png, "image/png"))], "keyframe_frames"),  # no frame for it
        (
            [("last_image", ("l.png", png, "image/png")), ("keyframe", ("k.png", png, "image/png"))],
            "last_image",
        ),
        ([("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))], "image"),
        ([("video", ("v.mp4", b"not a video", "video/mp4"))], "video"),
        ([("other", ("o.png", png, "image/png"))], "other"),
    ):
        data = {**form, "keyframe_frames": "-2"} if field == "last_image" else form  # -2 and -1: one group
        response = client.post("/v1/videos", data=data, files=files)
        assert response.status_code == 422 and response.json()["field"] == field, (field, response.text)
    big = os.urandom(int(UPLOAD_LIMIT_MB * 2**20) + 1)
    assert (
        client.post("/v1/videos", data=form, files={"image": ("x.png", big, "image/png")}).status_code == 413
    )
    # token: missing or wrong on every route
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in (("GET", "/"), ("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/videos"),
                             ("POST", "/v1/videos"), ("GET", "/openapi.json")):  # fmt: skip
            response = httpx.request(
                method, server.url + path, headers=headers, json={"prompt": PROMPT}, timeout=30
            )
            assert response.status_code == 401, (method, path, headers, response.text)
    assert httpx.get(f"{server.url}/health", params={"access_token": TOKEN}, timeout=30).status_code == 200
    # unknown ids, and ids that are not ids
    for job_id in ("0" * 32, "..%2F..%2Fetc%2Fpasswd", "jobs.sqlite3"):
        for method, suffix in (("GET", ""), ("GET", "/content"), ("GET", "/events"), ("DELETE", "")):
            response = client.request(method, f"/v1/videos/{job_id}{suffix}")
            assert response.status_code == 404, (method, job_id, suffix, response.text)
    assert server.total() == before
    assert "motif_video_queue_length 0" in client.get("/metrics").text


def test_cancel_queued_and_running_jobs(server, tmp_path):
    """A queued job, a running one and an extension in its second window, cancelled: nothing is kept."""
    from motif_video.pipelines.export import write_mp4

    clip = write_mp4(np.zeros((5, 64, 64, 3), np.uint8), tmp_path / "clip.mp4")
    window_steps = 30
    second = server.client.post(
        "/v1/videos",
        data={"prompt": PROMPT, "seed": "2", "extend_seconds": "2", "overlap": "5", "num_frames": "9",
              "steps": str(window_steps)},
        files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")},
    ).json()  # fmt: skip
    windows = second["settings"]["windows"]
    assert second["steps"] == window_steps * windows > 2 * window_steps, second
    window_total = window_steps + 2 * SMALL_FIT  # and once it runs, each window's decoder fit
    wait_for(
        lambda: server.job(second["id"])["step"] > window_total, 120, "the extension in its second window"
    )
    assert server.job(second["id"])["steps"] == window_total * windows
    first = server.submit(seed=1, **LONG)
    wait_for(lambda: server.job(first["id"])["step"] >= 1, 60, "the other worker mid-job")
    queued = server.submit(seed=3, **TINY)
    assert server.job(queued["id"])["state"] == "queued"
    cancelled = server.client.delete(f"/v1/videos/{queued['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    running = server.job(first["id"])
    assert running["state"] == "running" and running["steps"] == LONG["steps"] + SMALL_FIT
    assert 1 <= running["step"] < LONG["steps"]
    for job in (first, second):
        response = server.client.delete(f"/v1/videos/{job['id']}")
        assert response.status_code == 200 and response.json()["state"] == "cancelled", response.text
    # the workers stop after their current step and take new work; the cancelled jobs stay cancelled, no video
    after = server.submit(seed=4, **TINY)
    assert server.wait_state(after["id"], ("succeeded", "failed"), timeout=60)["state"] == "succeeded"
    for job in (first, second, queued):
        record = server.job(job["id"])
        assert record["state"] == "cancelled" and record["step"] < record["steps"], record
        assert server.client.get(f"/v1/videos/{job['id']}/content").status_code == 409
        assert server.client.delete(f"/v1/videos/{job['id']}").status_code == 409  # already ended
    assert server.client.delete(f"/v1/videos/{after['id']}").status_code == 409
    for job in (first, second, queued):  # no video, no part file (once the worker has seen the cancel)
        wait_for(
            lambda j=job: not list(server.results.glob(f"*{j['id']}*")), 30, f"no file of job {job['id']}"
        )
    assert server.job(second["id"])["step"] < 2 * window_total  # the extension stopped in its second window


def test_fifty_concurrent_submissions_each_finish_once(server):
    fields = {"prompt": PROMPT, "width": 16, "height": 16, "num_frames": 1, "steps": 1}

    def post(i):
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            response = c.post("/v1/videos", json={**fields, "seed": i})
            assert response.status_code == 202, response.text
            return response.json()["id"]

    with ThreadPoolExecutor(50) as pool:
        ids = list(pool.map(post, range(50)))
    assert len(set(ids)) == 50
    for job_id in ids:
        server.wait_state(job_id, ("succeeded", "failed", "cancelled"), timeout=240)
    jobs = [server.job(i) for i in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 50, [j["error"] for j in jobs if j["error"]]
    assert all(j["attempts"] == 1 for j in jobs)  # claimed once each
    assert sorted(j["settings"]["seed"] for j in jobs) == list(range(50))
    for job_id in ids:  # exactly one video per job, and it is served
        assert len(list(server.results.glob(f"{job_id}*.mp4"))) == 1
    assert len({j["worker"] for j in jobs}) == 2  # both workers took jobs
    listed, offset = set(), 0
    while offset is not None:
        page = server.client.get("/v1/videos", params={"limit": 20, "offset": offset}).json()
        listed |= {j["id"] for j in page["data"]}
        offset = page["next_offset"]
    assert set(ids) <= listed


def test_worker_killed_mid_job_completes_on_another(server):
    job = server.submit(seed=7, **{**LONG, "steps": 20})
    running = wait_for(lambda: (j := server.job(job["id"]))["step"] >= 2 and j, 60, "the job mid-way")
    host, pid = running["worker"].rsplit(":", 1)
    os.kill(int(pid), signal.SIGKILL)
    done = server.wait_state(job["id"], ("succeeded", "failed"), timeout=180)
    assert done["state"] == "succeeded", done["error"]
    assert done["worker"] != running["worker"] and done["attempts"] == 2
    assert done["step"] == done["steps"] == 20 + SMALL_FIT
    assert len(list(server.results.glob(f"{job['id']}*.mp4"))) == 1

    def replaced():
        health = server.client.get("/health").json()
        return health["workers"] == 2 and running["worker"] not in health["worker_ids"]

    wait_for(replaced, 120, "the killed worker replaced", interval=0.5)
    # the killed worker's uploads folder, which its own cleanup never removed, went when its successor started
    assert not list(Path(tempfile.gettempdir()).glob(f"motif-video-job-{pid}-*"))


def test_events_range_list_metrics_openapi_page(server, tmp_path):
    job = server.submit(seed=9, **{**TINY, "steps": 4})
    events = []
    with server.client.stream("GET", f"/v1/videos/{job['id']}/events", timeout=120) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == "end":
                    break
    assert events[-1][0] == "end" and events[-1][1]["state"] == "succeeded"
    progress = [e["progress"] for _, e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    whole = server.client.get(f"/v1/videos/{job['id']}/content").content
    part = server.client.get(f"/v1/videos/{job['id']}/content", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(whole)}"
    record = server.job(job["id"])
    assert record["timings"]["running_seconds"] > 0 and record["timings"]["step_seconds"] > 0
    assert [e["warnings"] for _, e in events[-1:]] == [record["warnings"]]
    assert len(record["warnings"]) == 1 and "trained at 64x64 only; at 32x32" in record["warnings"][0]
    page = server.client.get("/v1/videos", params={"limit": 1}).json()
    assert page["data"][0]["id"] == job["id"] and page["total"] >= 1
    assert server.client.get("/v1/videos", params={"limit": 0}).status_code == 422
    metrics = server.client.get("/metrics").text
    for name in ("motif_video_queue_length", 'motif_video_jobs{state="succeeded"}', "motif_video_step_seconds",
                 "motif_video_workers 2", "motif_video_worker_peak_memory_bytes"):  # fmt: skip
        assert name in metrics, metrics
    schema = server.client.get("/openapi.json").json()
    assert {"/v1/videos", "/v1/videos/{job_id}", "/v1/videos/{job_id}/content", "/v1/videos/{job_id}/events",
            "/health", "/metrics"} <= set(schema["paths"])  # fmt: skip
    assert {"get", "post"} <= set(schema["paths"]["/v1/videos"]) and "delete" in schema["paths"][
        "/v1/videos/{job_id}"
    ]
    body = schema["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["required"] == ["prompt"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    # every error the routes answer is declared, in the API's one error shape (not FastAPI's list of errors)
    declared = {
        ("/v1/videos", "post"): {"400", "401", "413", "415", "422", "429"},
        ("/v1/videos", "get"): {"401", "422"},
        ("/v1/videos/{job_id}", "get"): {"401", "404"},
        ("/v1/videos/{job_id}", "delete"): {"401", "404", "409"},
        ("/v1/videos/{job_id}/content", "get"): {"401", "404", "409"},
        ("/v1/videos/{job_id}/events", "get"): {"401", "404"},
    }
    for (path, method), codes in declared.items():
        responses = schema["paths"][path][method]["responses"]
        assert codes <= set(responses), (path, method, sorted(responses))
        for code in codes:
            error = responses[code]["content"]["application/json"]["schema"]
            assert error["required"] == ["detail"] and "field" in error["properties"], (path, method, code)
    page_html = server.client.get("/").text
    assert 'id="prompt"' in page_html and "EventSource" in page_html
    # the schema says every route wants the bearer token; /docs opened with the token reads the schema with it
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {"type": "http", "scheme": "bearer"}
    assert schema["paths"]["/v1/videos"]["post"]["security"] == [{"HTTPBearer": []}]
    assert httpx.get(f"{server.url}/docs", timeout=30).status_code == 401
    docs = httpx.get(f"{server.url}/docs", params={"access_token": TOKEN}, timeout=30)
    assert docs.status_code == 200 and f"url: '/openapi.json?access_token={TOKEN}'" in docs.text, docs.text
    assert (
        httpx.get(f"{server.url}/openapi.json", params={"access_token": TOKEN}, timeout=30).json() == schema
    )


CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (.ci/run installs it); never a downloaded browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def test_page_in_a_browser_submits_shows_progress_and_plays(server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM} here (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("MOTIF_VIDEO_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(120_000)
            refused = []  # every request the page makes is answered (before: a 404 for /favicon.ico)
            page.on("response", lambda r: r.status >= 400 and refused.append(f"{r.status} {r.url}"))
            page.goto(f"{server.url}/?access_token={TOKEN}")
            page.fill("#prompt", PROMPT)
            # values the API takes are values the form takes (before: its steps refused 3.2, 0.33 and 2.25)
            for name, value in (("guidance_scale", "3.2"), ("strength", "0.33"), ("extend_seconds", "2.25")):
                page.fill(f"#{name}", value)
                assert page.eval_on_selector(f"#{name}", "e => e.checkValidity()"), name
                page.fill(f"#{name}", "")
            for name, value in (
                ("width", 64),
                ("height", 64),
                ("num_frames", 17),
                ("steps", 6),
                ("seed", 11),
            ):
                page.fill(f"#{name}", str(value))
            last, key = tmp_path / "last.png", tmp_path / "key.png"
            last.write_bytes(_png((64, 64), (30, 30, 200)))
            key.write_bytes(_png((64, 64), (30, 200, 30)))
            page.set_input_files("#last_image", str(last))
            page.set_input_files("#keyframe", str(key))
            page.fill("#keyframe_frames", "8")
            page.click("#submit")
            page.wait_for_function(
                "document.getElementById('state').textContent.startsWith('succeeded')"
                " || document.getElementById('error').textContent !== ''"
            )
            assert page.text_content("#error") == ""
            assert page.text_content("#percent") == "100 %"
            assert page.eval_on_selector("#bar", "bar => bar.value") == 100
            page.wait_for_function(
                "(() => { const v = document.getElementById('player');"
                " return v.readyState >= 2 && v.played.length > 0 && v.currentTime > 0 && !v.error; })()"
            )
            video = page.evaluate(
                "(() => { const v = document.getElementById('player');"
                " return {w: v.videoWidth, h: v.videoHeight, src: v.currentSrc, paused: v.paused}; })()"
            )
            assert (video["w"], video["h"]) == (64, 64) and "/content" in video["src"], video
            assert not refused, refused
            # the server's log (its workers' too) holds none of the libraries' import notices the command drops
            assert not [text for text in KNOWN_NOTICES.values() if text in server.log.read_text()]
            assert page.text_content("#warning") == ""  # 64x64, the small model's own size
            page.wait_for_function("document.querySelectorAll('#history tr').length >= 1")
            row = page.text_content("#history tr")
            assert PROMPT in row and "seed=11" in row and "succeeded" in row, row
            assert "last_image keyframes@8" in row, row
            page.locator("#history tr", has_text="width=32").first.click()  # an earlier test's 32x32 job
            assert "warning: the model was trained at 64x64 only" in page.text_content("#warning")
            page.screenshot(path=str(shots / "serve-page.png"))
            # a long job cancelled from the page: the button shows while it is queued or running, then goes
            page.set_input_files("#last_image", [])
            page.set_input_files("#keyframe", [])
            page.fill("#keyframe_frames", "")
            for name, value in LONG.items():
                page.fill(f"#{name}", str(value))
            page.click("#submit")
            page.wait_for_selector("#cancel", state="visible")
            # a finished job picked from the history is what the status shows while the long one runs on (before:
            # the long job's progress events went on writing over it)
            page.locator("#history tr", has_text="last_image keyframes@8").first.click()
            page.wait_for_timeout(1500)
            assert page.text_content("#state").startswith("succeeded") and page.is_hidden("#cancel")
            page.wait_for_function(
                "[...document.querySelectorAll('#history tr')].some((r) => /queued|running/.test(r.textContent))"
            )
            page.locator("#history tr", has_text=re.compile("queued|running")).first.click()
            page.wait_for_selector("#cancel", state="visible")
            page.click("#cancel")
            page.wait_for_function("document.getElementById('state').textContent.startsWith('cancelled')")
            assert page.is_hidden("#cancel") and page.text_content("#error") == ""
            page.wait_for_function(
                "[...document.querySelectorAll('#history tr')].some((r) => r.textContent.includes('cancelled'))"
            )
        finally:
            browser.close()
    assert (shots / "serve-page.png").stat().st_size > 0
