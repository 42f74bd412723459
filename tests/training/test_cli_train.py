"""`motif-video train` and `motif-video cache`: help, a tiny run, a resumable cache, clear errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from motif_video.cli import main
from motif_video.synthetic.squares import write_moving_squares


@pytest.mark.parametrize("command", ["train", "cache"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out or command == "cache"


def test_cache_then_train(tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="motif_video.training.trainer")
    write_moving_squares(tmp_path / "clips", 2, frames=5, height=32, width=32)
    (tmp_path / "clips" / "bad.mp4").write_bytes(b"junk")
    args = [
        "cache",
        str(tmp_path / "clips"),
        str(tmp_path / "cache"),
        "--bucket",
        "5x32x32",
        "--max-tokens",
        "16",
        "--components",
        "tiny",
    ]
    assert main(args) == 0
    assert "1 unreadable" in capsys.readouterr().out
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert sum(len(s["items"]) for s in index["shards"]) == 2
    assert main(args) == 0  # resumes: nothing left to encode
    assert len(json.loads((tmp_path / "cache" / "index.json").read_text())["shards"]) == len(index["shards"])

    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": {"preset": "tiny", "components": "tiny", "max_text_tokens": 16}, "data": {"cache": str(tmp_path / "cache"), "batch_size": 2, "buckets": [[5, 32, 32]]},
                                  "tensorboard": False}))  # fmt: skip
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--output",
                str(tmp_path / "out"),
                "--max-steps",
                "2",
                "optim.lr=1e-3",
            ]
        )
        == 0
    )
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    # the cache's skip report (bad.mp4) is the run's, as a run from the media would log it
    assert "data: cached; when written: skipped 1 file(s): 1 unreadable;" in caplog.text


def test_bad_override_exits_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("max_steps: 1\n")
    assert main(["train", "--config", str(config), "optim.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    # a distillation recipe given to train: the command to run (before: "unknown key(s) ['distill']")
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "distill" / "tiny-cpu.yaml"
    assert main(["train", "--config", str(recipe)]) == 2
    assert (
        f"{recipe} is a distillation recipe (its distill: section): run motif-video distill --config {recipe}"
        in capsys.readouterr().err
    )


def test_cache_records_its_latent_normalisation_and_refuses_another(tmp_path):
    from motif_video.pipelines.latents import FIRST_FRAME_MEAN, FIRST_FRAME_STD
    from motif_video.training.cache import build_cache, check_latent_norm, read_index
    from motif_video.training.components import tiny_components, vae_config
    from motif_video.training.data import MediaDataset, list_media

    write_moving_squares(tmp_path / "clips", 2, frames=5, height=32, width=32)
    dataset = MediaDataset(list_media(tmp_path / "clips", "caption"), [(5, 32, 32)], 24.0)
    components = tiny_components()
    index = build_cache(dataset, components, tmp_path / "cache", max_tokens=16, shard_size=1, progress=False)
    assert len(index["shards"]) == 2
    assert index["latent_norm"]["latents_std"] == list(components.vae.config.latents_std)
    assert index["latent_norm"][FIRST_FRAME_MEAN] is None
    check_latent_norm(read_index(tmp_path / "cache"), vae_config("tiny"), tmp_path / "cache")  # the same VAE

    paired = {**vae_config("tiny"), FIRST_FRAME_MEAN: [0.0] * 16, FIRST_FRAME_STD: [0.5] * 16}
    with pytest.raises(
        ValueError,
        match=r"other latent statistics \(_first_frame_latents_mean, _first_frame_latents_std differ\).*Delete the folder",
    ):
        check_latent_norm(index, paired, tmp_path / "cache")
    components.vae.register_to_config(latents_std=[2.0] * 16)
    with pytest.raises(
        ValueError, match=r"cache '.*cache' was written with other latent statistics \(latents_std"
    ):
        build_cache(
            dataset, components, tmp_path / "cache", max_tokens=16, progress=False
        )  # a resume is refused too
    # caches from before the record: accepted for a VAE without the frame-0 pair only
    old = {k: v for k, v in index.items() if k != "latent_norm"}
    check_latent_norm(old, vae_config("tiny"), tmp_path / "cache")
    with pytest.raises(ValueError, match="written before caches recorded their latent normalisation"):
        check_latent_norm(old, paired, tmp_path / "cache")


def test_cache_keys_items_on_their_resolved_path_and_keeps_its_settings(tmp_path, monkeypatch, capsys):
    """The same folder typed relative, then absolute, adds nothing; other settings are refused, naming both."""
    write_moving_squares(tmp_path / "clips", 2, frames=5, height=32, width=32)
    monkeypatch.chdir(tmp_path)
    common = ["cache", "--bucket", "5x32x32", "--max-tokens", "16", "--components", "tiny"]
    assert main([*common, "clips", "cache"]) == 0
    assert main([*common, str(tmp_path / "clips"), "cache"]) == 0
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert sum(len(s["items"]) for s in index["shards"]) == 2
    assert index["buckets"] == [[5, 32, 32]]
    capsys.readouterr()
    for flags, message in [
        (["--image-embeds"], "written with image_embeds False, and this run asks for True (--image-embeds"),
        (["--fps", "12"], "written with fps 24.0, and this run asks for 12.0 (--fps / data.fps)"),
        (
            ["--bucket", "5x48x48"],
            "written with buckets [[5, 32, 32]], and this run asks for [[5, 32, 32], [5, 48, 48]]",
        ),
    ]:
        assert main([*common, *flags, str(tmp_path / "clips"), "cache"]) == 2
        assert message in capsys.readouterr().err


def test_train_refuses_a_cache_of_other_buckets_and_rewrites_an_empty_one(tmp_path, capsys):
    from tests.training.conftest import tiny_overrides, write_random_cache

    from motif_video.training.inputs import _cache_complete

    cache = write_random_cache(tmp_path / "cache", count=2)  # 9x64x64 items
    (tmp_path / "recipe.yaml").write_text("seed: 0\n")
    train = ["train", "--config", str(tmp_path / "recipe.yaml")]
    overrides = tiny_overrides(tmp_path / "run", cache, **{"data.buckets": [[9, 32, 32]]})
    assert main([*train, *overrides]) == 2
    assert (
        "holds items of the buckets [[9, 64, 64]], and data.buckets is [[9, 32, 32]]"
        in capsys.readouterr().err
    )

    (tmp_path / "empty").mkdir()
    assert (
        main(["cache", str(tmp_path / "empty"), str(tmp_path / "empty-cache"), "--components", "tiny"]) == 0
    )
    assert not _cache_complete(str(tmp_path / "empty-cache"))
    overrides = tiny_overrides(
        tmp_path / "run", tmp_path / "empty-cache", **{"data.path": str(tmp_path / "empty")}
    )
    assert main([*train, *overrides]) == 2
    assert "has no usable media to cache into" in capsys.readouterr().err


def test_train_refuses_a_cache_whose_settings_do_not_fit_the_recipe(tmp_path, capsys):
    """A cache's fps, text length and (missing) image embeddings are checked against the recipe, naming the
    setting, both values and the recipe key; the trainer's own cache too, written for another i2v.probability."""
    from tests.training.conftest import tiny_overrides

    write_moving_squares(tmp_path / "clips", 2, frames=5, height=32, width=32)
    cache = tmp_path / "cache"
    flags = ["--bucket", "5x32x32", "--max-tokens", "16", "--components", "tiny"]
    assert main(["cache", str(tmp_path / "clips"), str(cache), *flags]) == 0
    (tmp_path / "recipe.yaml").write_text("seed: 0\n")
    train = ["train", "--config", str(tmp_path / "recipe.yaml")]
    base = {"model.max_text_tokens": 16, "data.fps": 24, "max_steps": 1}
    for changed, message in [
        ({"data.fps": 16}, "written with fps 24.0, and this recipe asks for 16.0 (--fps / data.fps): set data.fps=24.0"),
        ({"model.max_text_tokens": 512},
         "written with max_tokens 16, and this recipe asks for 512 (--max-tokens / model.max_text_tokens): set "
         "model.max_text_tokens=16"),
        ({"i2v.probability": 0.3},
         "written with image_embeds False, and this recipe asks for True (--image-embeds / i2v.image_embeds): set "
         "i2v.image_embeds=false (or i2v.probability=0)"),
    ]:  # fmt: skip
        capsys.readouterr()
        assert main([*train, *tiny_overrides(tmp_path / "run", cache, **{**base, **changed})]) == 2
        err = capsys.readouterr().err
        assert f"cache {str(cache)!r}" in err and message in err

    # the trainer's own cache, written without image embeddings (i2v.probability 0), is not reused at 0.3
    own = {**base, "data.path": str(tmp_path / "clips"), "data.buckets": [[5, 32, 32]]}
    assert main([*train, *tiny_overrides(tmp_path / "own", tmp_path / "own-cache", **own)]) == 0
    capsys.readouterr()
    conditioned = {**own, "i2v.probability": 0.3}
    assert main([*train, *tiny_overrides(tmp_path / "own", tmp_path / "own-cache", **conditioned)]) == 2
    assert "written with image_embeds False, and this recipe asks for True" in capsys.readouterr().err


def test_image_embeddings_are_needed_only_where_training_reads_them():
    from motif_video.training.config import TrainConfig
    from motif_video.training.inputs import needs_image_embeds

    def needs(**i2v) -> bool:
        config = TrainConfig()
        buckets = i2v.pop("buckets", [[5, 32, 32]])
        config.data.buckets = buckets
        for key, value in i2v.items():
            setattr(config.i2v, key, value)
        return needs_image_embeds(config)

    assert not needs(probability=0.0)
    assert needs(probability=0.3)
    assert not needs(probability=0.3, image_embeds=False)
    assert not needs(probability=0.3, patterns={"last": 1.0, "first": 0.0})  # never latent frame 0
    assert needs(
        probability=0.3, patterns={"last": 1.0}, buckets=[[5, 32, 32], [1, 32, 32]]
    )  # one latent frame
    assert needs(probability=0.3, patterns={"keyframes": 1.0})


def test_cache_checks_its_output_and_components_before_probing_any_media(tmp_path, monkeypatch, capsys):
    from motif_video.training import data

    write_moving_squares(tmp_path / "clips", 1, frames=5, height=32, width=32)
    (tmp_path / "a-file").write_text("")
    probed = []
    monkeypatch.setattr(data, "probe", lambda path: probed.append(path))
    clips = str(tmp_path / "clips")
    for output, components, message in [
        (tmp_path / "a-file", "tiny", f"cache folder {str(tmp_path / 'a-file')!r} is a file"),
        ("/proc/no/such", "tiny", "cannot create the cache folder '/proc/no/such'"),
        (tmp_path / "out", "no-such-components", "'no-such-components' is neither an existing folder"),
    ]:
        assert main(["cache", clips, str(output), "--components", components]) == 2
        assert message in capsys.readouterr().err
    assert probed == [] and not (tmp_path / "out").exists()


def test_only_rank_0_prints_the_runs_last_line(monkeypatch, capsys, tmp_path):
    """Under torchrun every rank returns the result; one line is printed, by rank 0 (before: one per rank)."""
    from types import SimpleNamespace

    from motif_video.commands.recipe_args import report

    result = SimpleNamespace(losses=[0.5], step=3, output_dir=tmp_path, exported=True)
    for rank, expected in (("1", ""), ("0", f"trained to step 3; last loss 0.5000; output in {tmp_path}\n")):
        monkeypatch.setenv("RANK", rank)
        report(result, "trained", "output")
        assert capsys.readouterr().out == expected


def test_files_a_loader_worker_cannot_decode_reach_the_runs_report(tmp_path, monkeypatch, caplog):
    """With `data.num_workers` the media are decoded in loader processes, whose skip reports used to be lost: a
    file that probes fine and breaks on decode was missing from the run's last line ("no files skipped")."""
    from motif_video.training import data

    caplog.set_level("INFO", logger="motif_video.training.trainer")
    write_moving_squares(tmp_path / "clips", 2, frames=5, height=32, width=32)
    decode, calls, trainer = data.decode_frames, iter(range(100)), os.getpid()

    def cut_short(path, indices):  # the first file the loader's worker decodes breaks (it inherits this)
        if os.getpid() != trainer and next(calls) == 0:
            raise OSError(f"{path.name} is cut short")
        return decode(path, indices)

    monkeypatch.setattr(data, "decode_frames", cut_short)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": {"preset": "tiny", "components": "tiny", "max_text_tokens": 16}, "data": {"path": str(tmp_path / "clips"), "batch_size": 1, "buckets": [[5, 32, 32]], "num_workers": 1},
                                  "tensorboard": False}))  # fmt: skip
    assert (
        main(["train", "--config", str(config), "--output", str(tmp_path / "out"), "--max-steps", "3"]) == 0
    )
    clips = re.escape(str(tmp_path / "clips"))
    assert re.search(
        rf"data: skipped 1 file\(s\): 1 undecodable \(e\.g\. {clips}/clip-\d+\.mp4\);", caplog.text
    )
    # the first step's batch had nothing to repeat: it took the first item that decodes
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
