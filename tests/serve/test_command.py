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


@pytest.mark.parametrize("damage", ["truncated transformer", "no vae config", "no vae folder", "no index"])
def test_serve_refuses_a_model_folder_with_a_part_missing_or_broken(damage, nothing_starts, tmp_path, capsys):
    """A local --model is checked without loading it (each config and weight file parses, every component the
    index names is there): before, the API came up and its workers failed one after another."""
    import shutil

    from motif_video.testing import write_tiny_pipeline_folder

    folder = write_tiny_pipeline_folder(tmp_path / "model")
    weights = next((folder / "transformer").glob("*.safetensors"))
    expected = {
        "truncated transformer": f"could not load {weights} (",
        "no vae config": f"could not load {folder / 'vae' / 'config.json'} (missing)",
        "no vae folder": "names the component 'vae', but",
        "no index": "is not a model folder: it has no model_index.json",
    }[damage]
    if damage == "truncated transformer":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no vae config":
        (folder / "vae" / "config.json").unlink()
    elif damage == "no vae folder":
        shutil.rmtree(folder / "vae")
    else:
        (folder / "model_index.json").unlink()
    assert main(["serve", "--results", str(tmp_path / "results"), "--model", str(folder)]) == 2
    assert expected in capsys.readouterr().err


def test_the_start_check_takes_every_kind_of_model_folder(tmp_path):
    """A pipeline folder, a student (its transformer and a generation config naming its base) and a training output
    pass the check that refuses broken folders."""
    import shutil

    from motif_video.hub import resolve_folder
    from motif_video.model_folder import check_model_folder
    from motif_video.training.config import load_config
    from motif_video.training.trainer import train
    from tests.training.conftest import tiny_overrides, write_random_cache

    for name in ("small", "small-4step"):
        check_model_folder(shutil.copytree(resolve_folder(name), tmp_path / name))
    cache = write_random_cache(tmp_path / "cache", count=2)
    train(load_config(None, tiny_overrides(tmp_path / "run", cache, max_steps=1)))
    check_model_folder(tmp_path / "run")
