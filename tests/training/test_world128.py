"""recipes/small/world128.py wires the 128x128x17 world's stages together: the heavy steps (decoder and transformer
training, clips, assembly) are replaced by recorders, so what is checked is which folders and settings each stage
gets."""

from pathlib import Path

import pytest
import recipes.small.build as build
import recipes.small.world128 as world

from motif_video.evaluation.split import HELD_OUT


@pytest.fixture
def record(monkeypatch):
    calls = []
    monkeypatch.setattr(
        world, "finetune_decoder", lambda src, dst, **kw: calls.append(("decoder", src, dst, kw))
    )
    monkeypatch.setattr(world, "write_clips", lambda out, n, **kw: calls.append(("clips", out, n, kw)))
    monkeypatch.setattr(build, "train", lambda config: calls.append(("train", config)))
    monkeypatch.setattr(
        world, "assemble", lambda dst, comp, tr, gen: calls.append(("assemble", dst, comp, tr, gen))
    )
    monkeypatch.setattr(world.shutil, "copytree", lambda a, b, **kw: calls.append(("copy", Path(a), Path(b))))
    return calls


def test_the_stages_continue_the_shipped_transformer_in_the_128_world(record, tmp_path):
    base = tmp_path / "base"
    world.main(["--output", str(tmp_path / "out"), "--base", str(base)])
    out = tmp_path / "out"
    components = out / "components"

    # the decoder: a copy of the base's components, its decoder trained in place on 128x128x17 clips
    assert record[0] == ("copy", base, components)
    kind, src, dst, kw = record[1]
    assert (kind, src, dst) == ("decoder", components / "vae", components / "vae")
    assert (kw["frames"], kw["height"], kw["width"]) == (17, 128, 128) and not kw.get("train_encoder")

    clips = [c for c in record if c[0] == "clips"]
    assert [(c[1].name, c[2], c[3]["partial_captions"]) for c in clips] == list(world.CLIPS)
    for _, _, _, kw in clips:
        assert kw["exclude"] == HELD_OUT and kw["ranges"] == world.NARROW
        assert (kw["frames"], kw["height"], kw["width"]) == (17, 128, 128)

    trains = [c[1] for c in record if c[0] == "train"]
    assert [Path(t.output_dir) for t in trains] == [out / name for name, *_ in world.STAGES]
    previous = [base / "transformer"] + [out / name / "transformer-ema" for name, *_ in world.STAGES[:-1]]
    for config, before, (_, steps, lr, weight, data) in zip(trains, previous, world.STAGES):
        assert Path(config.model.pretrained) == before
        assert Path(config.model.components) == components
        assert (Path(config.data.path), Path(config.data.cache)) == (out / data, out / f"cache_{data}")
        assert (config.max_steps, config.optim.lr, config.objective.first_frame_weight) == (steps, lr, weight)
        assert [list(b) for b in config.data.buckets] == [[17, 128, 128]]
        assert config.tread.probability == 0 and config.i2v.probability == 0.5

    last = world.STAGES[-1][0]
    assert record[-1] == (
        "assemble",
        out / "model",
        components,
        out / last / "transformer-ema",
        world.GENERATION_128,
    )
    assert (world.GENERATION_128["num_frames"], world.GENERATION_128["height"]) == (17, 128)


def test_skipping_the_decoder_keeps_its_folder(record, tmp_path):
    skip = [name for name in world.STAGE_NAMES if name not in ("transformer128_1", "assemble")]
    world.main(["--output", str(tmp_path), "max_steps=7", "--skip", *skip])
    assert [c[0] for c in record] == ["train", "assemble"]
    config = record[0][1]
    assert Path(config.model.components) == tmp_path / "components"
    assert config.max_steps == 7  # the command line's overrides win over the stage's
    timings = (tmp_path / "timings.json").read_text()
    assert '"transformer128_1"' in timings and '"decoder"' not in timings


def test_unknown_stage_is_refused(capsys):
    with pytest.raises(SystemExit) as exit:
        world.parse_args(["--skip", "vae"])
    assert exit.value.code == 2
    assert "invalid choice: 'vae'" in capsys.readouterr().err


def test_resume_skips_the_stages_recorded_as_finished(record, tmp_path):
    done = ["decoder", "clips", "clips_more", "clips_partial", "transformer128_1"]
    (tmp_path / "timings.json").write_text("{" + ", ".join(f'"{name}": 1.0' for name in done) + "}")
    world.main(["--output", str(tmp_path), "--resume"])
    assert [c[0] for c in record] == ["train"] * (len(world.STAGES) - 1) + ["assemble"]
    first = record[0][1]  # the first stage run goes on from the last finished one's EMA weights
    assert Path(first.output_dir) == tmp_path / "transformer128_2"
    assert Path(first.model.pretrained) == tmp_path / "transformer128_1" / "transformer-ema"
    assert '"assemble"' in (tmp_path / "timings.json").read_text()

    record.clear()  # without --resume the same folder is built again from the start
    world.main(["--output", str(tmp_path)])
    assert [c[0] for c in record[:2]] == ["copy", "decoder"]
