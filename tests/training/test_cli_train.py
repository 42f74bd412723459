"""`motif-video train` and `motif-video cache`: help, a tiny run, a resumable cache, clear errors."""

from __future__ import annotations

import json

import pytest

from motif_video.cli import main
from motif_video.synthetic.squares import write_moving_squares


@pytest.mark.parametrize("command", ["train", "cache"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out or command == "cache"


def test_cache_then_train(tmp_path, capsys):
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
    config.write_text(json.dumps({"model": {"preset": "tiny", "components": "tiny"}, "data": {"cache": str(tmp_path / "cache"), "batch_size": 2},
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


def test_bad_override_exits_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("max_steps: 1\n")
    assert main(["train", "--config", str(config), "optim.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
