"""`motif-video serve` refuses what would start a server that cannot work: exit 2 with a message naming the flag,
before any worker or the API starts."""

from __future__ import annotations

import pytest

from motif_video.cli import main
from motif_video.serve import server


@pytest.fixture
def nothing_starts(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("serve started although its arguments are bad")

    monkeypatch.setattr(server.WorkerPool, "start", started)
    monkeypatch.setattr(server, "_run_api", started)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nonexistent-model"], "'nonexistent-model' is neither an existing folder"),
        (["--device", "bogus"], "--device must be auto, cpu, cuda or cuda:N, got 'bogus'"),
        (["--device", "cuda:99"], "device 'cuda:99' requested but this machine has"),
        (["--token", ""], "--token must not be empty; leave it out (and MOTIF_VIDEO_TOKEN unset or empty)"),
        # a Hub id that cannot be fetched (here: offline and not in the cache; elsewhere: no such repo)
        (
            ["--model", "nobody-here/no-such-model"],
            "could not get 'nobody-here/no-such-model' from the Hugging",
        ),
    ],
)
def test_serve_refuses_what_it_could_not_run(argv, message, nothing_starts, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["serve", "--results", str(tmp_path / "results"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("motif-video serve: error: ") and message in err, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--results", "{file}"], "--results {file} cannot be a folder of results: [Errno 17] File exists"),
        (["--database", "postgresql://127.0.0.1:1/x"], "--database: cannot open the queue: cannot connect"),
        (["--database", "sqlite:////proc/nope/x.db"], "--database: cannot open the queue: [Errno"),
    ],
)
def test_serve_names_a_results_folder_or_database_it_cannot_use(
    argv, message, nothing_starts, tmp_path, capsys
):
    (tmp_path / "a-file").write_text("")
    argv = [a.format(file=tmp_path / "a-file") for a in argv]
    if "--results" not in argv:
        argv += ["--results", str(tmp_path / "results")]
    assert main(["serve", "--workers", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("motif-video serve: error: ") and message.format(file=tmp_path / "a-file") in err, (
        err
    )
