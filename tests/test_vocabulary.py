"""The small model's vocabulary (`info small`) and the warning for prompt words it does not know."""

from __future__ import annotations

import json

from motif_video import cli
from motif_video.hub import shipped_model
from motif_video.vocabulary import folder_vocabulary, prompt_warning, scene_roles, unknown_words

SMALL = folder_vocabulary(shipped_model("small"))


def test_the_small_models_vocabulary_is_its_caption_words():
    assert len(SMALL) == 26 and "<unk>" not in SMALL
    roles = scene_roles(SMALL)
    assert roles["backgrounds"] == ["black", "gray", "white", "navy"]
    assert roles["shapes"] == ["circle", "square", "triangle"]
    assert set(roles["object colours"]) == {"red", "green", "blue", "yellow", "purple", "orange", "white"}
    assert folder_vocabulary(shipped_model("small-4step")) is None  # a student: its base model's tokenizer


def test_unknown_words_and_roles():
    assert unknown_words("A red Circle, moving left!", SMALL) == []
    assert unknown_words("a cat playing the piano, the cat", SMALL) == ["cat", "playing", "the", "piano"]
    assert prompt_warning("a red circle moving left on a black background", SMALL) is None
    warning = prompt_warning("a cat on a blue background", SMALL)
    assert "does not know the word(s) 'cat'" in warning and "no 'blue' background" in warning
    assert prompt_warning("anything at all", None) is None  # a subword tokenizer spells any word


def test_info_small_lists_the_vocabulary(capsys):
    assert cli.main(["info", "small"]) == 0
    out = capsys.readouterr().out
    assert "tokens at 64x64x33" in out and "per video (20 steps)" in out  # the shipped model's size and steps
    assert "backgrounds: black, gray, white, navy" in out and "vocabulary (26 words" in out
    assert cli.main(["info", "small", "--size", "64x64x33", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vocabulary"] == SMALL
    assert cli.main(["info", "tiny", "--size", "64x64x9"]) == 0
    assert "vocabulary" not in capsys.readouterr().out


def test_generate_warns_about_words_the_small_model_does_not_know(tmp_path, capsys):
    args = [
        "generate",
        "--model",
        "small",
        "--num-frames",
        "1",
        "--steps",
        "1",
        "--threads",
        "1",
        "--seed",
        "0",
    ]
    assert cli.main([*args, "--prompt", "a cat playing the piano", "--output", str(tmp_path / "a.mp4")]) == 0
    assert "warning: prompt 0: the model does not know the word(s) 'cat', 'playing', 'the', 'piano'" in (
        capsys.readouterr().out
    )
    assert cli.main([*args, "--prompt", "a red circle moving left on a black background",
                     "--output", str(tmp_path / "b.mp4")]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().out
