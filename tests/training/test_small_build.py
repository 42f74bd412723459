"""recipes/small/build.py wires its stages together: the heavy steps (VAE and transformer training, clips, assembly)
are replaced by recorders, so what is checked is which folders each stage reads and writes."""

import importlib.util
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "small" / "build.py"


@pytest.fixture
def build():
    spec = importlib.util.spec_from_file_location("small_build", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(build, monkeypatch, tmp_path, *argv):
    calls = []
    monkeypatch.setattr(build, "train_vae", lambda config, out: calls.append(("train_vae", Path(out))) or {})
    monkeypatch.setattr(
        build,
        "finetune_decoder",
        lambda src, dst, **kw: calls.append(("vae", Path(src), Path(dst), kw)) or {},
    )
    monkeypatch.setattr(
        build, "write_components", lambda out, vae, **kw: calls.append(("components", Path(out)))
    )
    monkeypatch.setattr(
        build,
        "write_clips",
        lambda out, n, **kw: calls.append(("clips", Path(out), kw.get("ranges"), kw.get("exclude"))),
    )
    monkeypatch.setattr(
        build,
        "write_grown_clips",
        lambda out, n, seed, **kw: calls.append(("grown", Path(out), kw.get("ranges"), kw.get("exclude"))),
    )
    monkeypatch.setattr(build, "train", lambda config: calls.append(("train", config)))
    monkeypatch.setattr(build, "add_first_frame_stats", lambda vae: calls.append(("first_frame", Path(vae))))
    monkeypatch.setattr(build, "assemble", lambda dst, comp, tr, gen: calls.append(("assemble", comp, tr)))
    copies = []
    monkeypatch.setattr(build.shutil, "copytree", lambda a, b, **kw: copies.append((Path(a), Path(b))))
    monkeypatch.setattr(sys, "argv", ["build.py", "--output", str(tmp_path), *argv])
    build.main()
    return calls, copies


def test_each_joint_round_trains_on_its_own_vae_and_latents(build, monkeypatch, tmp_path):
    stale = [tmp_path / "cache_joint2", tmp_path / "cache_f0"]
    for folder in stale:
        folder.mkdir(parents=True)
    calls, copies = run(build, monkeypatch, tmp_path)
    assert not any(f.exists() for f in stale)  # the VAE changed, so its old latent cache is gone

    trains = [c[1] for c in calls if c[0] == "train"]
    names = [Path(t.output_dir).name for t in trains]
    rounds = [r[2][0] for r in build.JOINT]
    assert names == [
        "transformer",
        *(c[0] for c in build.CONTINUED),
        *rounds,
        build.NARROW_STAGE[0],
        build.FINAL_STAGE[0],
        build.LAST_STAGE[0],
        build.GROW_STAGE[0],
    ]
    for previous, config in zip(names, trains[1:]):  # each stage continues from the one before
        assert Path(config.model.pretrained) == tmp_path / previous / "transformer-ema"
    for (suffix, _, (_, steps, lr, _)), config in zip(build.JOINT, trains[-len(rounds) - 4 : -4]):
        assert Path(config.model.components) == tmp_path / f"components_{suffix}"
        assert Path(config.data.cache) == tmp_path / f"cache_{suffix}"
        assert (config.max_steps, config.optim.lr) == (steps, lr)
        assert (tmp_path / f"vae_{suffix}", tmp_path / f"components_{suffix}" / "vae") in copies

    # every round's VAE starts from the previous round's and keeps the latent statistics
    joint = [c for c in calls if c[0] == "vae" and c[3].get("train_encoder")]
    sources = [tmp_path / "vae"] + [tmp_path / f"vae_{s}" for s, *_ in build.JOINT]
    expected = [
        (sources[k] if i == 0 else sources[k + 1], sources[k + 1], steps, lr)
        for k, (_, schedules, _) in enumerate(build.JOINT)
        for i, (steps, lr) in enumerate(schedules)
    ]
    assert [(c[1], c[2], c[3]["steps"], c[3]["lr"]) for c in joint] == expected
    assert all(c[3]["keep_latent_stats"] for c in joint)

    # the narrow stage: the last round's VAE and components, on narrow-range clips of their own, cached apart;
    # then the final stages (condition patterns) on the same clips through a copy of those components whose VAE has
    # the frame-0 pair, cached apart again; the model is assembled from the last one and a copy of those components
    # whose decoder was trained on keyframe still groups
    last_suffix = build.JOINT[-1][0]
    assert ("clips", tmp_path / "clips_narrow", build.NARROW, build.HELD_OUT) in calls
    f0 = tmp_path / "components_f0"
    for narrow, stage, components, cache in (
        (trains[-4], build.NARROW_STAGE, tmp_path / f"components_{last_suffix}", "cache_narrow"),
        (trains[-3], build.FINAL_STAGE, f0, "cache_f0"),
        (trains[-2], build.LAST_STAGE, f0, "cache_f0"),
    ):
        assert Path(narrow.data.path) == tmp_path / "clips_narrow"
        assert Path(narrow.data.cache) == tmp_path / cache
        assert Path(narrow.model.components) == components
        assert (narrow.max_steps, narrow.optim.lr) == stage[1:3]
    assert (tmp_path / f"components_{last_suffix}", f0) in copies
    assert calls.index(("first_frame", f0 / "vae")) < calls.index(("train", trains[-3]))
    assert trains[-3].objective.first_frame_weight == 4 and trains[-3].i2v.probability == 0.5
    assert trains[-2].objective.first_frame_weight == 8 and trains[-2].i2v.probability == 0.5
    assert trains[-4].objective.first_frame_weight == 1
    keyframes = tmp_path / "components_keyframes"
    assert (f0, keyframes) in copies
    schedules = build.KEYFRAME_SCHEDULES
    # each schedule continues the last one's decoder
    decoder_calls = [c for c in calls if c[0] == "vae" and c[1] == keyframes / "vae"]
    assert decoder_calls == [
        ("vae", keyframes / "vae", keyframes / "vae", {**build.KEYFRAME_DECODER, "steps": steps, "lr": lr})
        for steps, lr in schedules
    ]
    decoder = build.KEYFRAME_DECODER
    assert decoder["still_group_probability"] > 0 and not decoder.get("train_encoder")
    # the last stage: from LAST_STAGE's weights, on the narrow clips and grown ones, cached with those components
    grown = trains[-1]
    assert ("clips", tmp_path / "clips_grown", build.NARROW, build.HELD_OUT) in calls
    assert ("grown", tmp_path / "clips_grown", build.NARROW, build.HELD_OUT) in calls
    assert calls.index(decoder_calls[-1]) < calls.index(("train", grown))
    assert Path(grown.model.pretrained) == tmp_path / build.LAST_STAGE[0] / "transformer-ema"
    assert (Path(grown.data.path), Path(grown.data.cache)) == (
        tmp_path / "clips_grown",
        tmp_path / "cache_grown",
    )
    assert Path(grown.model.components) == keyframes
    assert (grown.max_steps, grown.optim.lr) == build.GROW_STAGE[1:3]
    assert grown.objective.first_frame_weight == 8 and grown.i2v.probability == 0.5
    assert calls[-1] == ("assemble", keyframes, tmp_path / build.GROW_STAGE[0] / "transformer-ema")


def test_skipped_stages_leave_their_outputs_alone(build, monkeypatch, tmp_path):
    kept = tmp_path / "cache"
    kept.mkdir(parents=True)
    calls, _ = run(build, monkeypatch, tmp_path, "--skip", *(s for s in build.STAGES if s != "assemble"))
    assert kept.exists()
    assert [c[0] for c in calls] == ["assemble"]


def test_clip_stages_leave_out_the_evaluations_held_out_combinations(build, monkeypatch, tmp_path):
    calls, _ = run(build, monkeypatch, tmp_path, "--skip", *(s for s in build.STAGES if "clips" not in s))
    assert [c[3] for c in calls if c[0] in ("clips", "grown")] == [build.HELD_OUT] * 4
    assert len(build.HELD_OUT) == 12
    calls, _ = run(
        build,
        monkeypatch,
        tmp_path,
        "--no-hold-out",
        "--skip",
        *(s for s in build.STAGES if "clips" not in s),
    )
    assert [c[3] for c in calls if c[0] in ("clips", "grown")] == [(), (), (), ()]  # no combination held out


def test_only_runs_the_named_stages(build, monkeypatch, tmp_path):
    # the distillation recipe's data: the last stage's clips alone, written where the recipe reads them
    calls, _ = run(build, monkeypatch, tmp_path, "--only", "clips_grown")
    assert [c[:2] for c in calls] == [
        ("clips", tmp_path / "clips_grown"),
        ("grown", tmp_path / "clips_grown"),
    ]
    timings = (tmp_path / "timings.json").read_text()
    assert '"clips_grown"' in timings and '"assemble"' not in timings
    calls, _ = run(build, monkeypatch, tmp_path, "--only", "clips_narrow", "assemble")
    assert [c[0] for c in calls] == ["clips", "assemble"]
    with pytest.raises(SystemExit):  # --only and --skip together are refused
        run(build, monkeypatch, tmp_path, "--only", "assemble", "--skip", "vae")
