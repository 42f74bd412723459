"""The small model's vocabulary (`info small`) and the warning for prompt words it does not know."""

from __future__ import annotations

import json

from motif_video import cli
from motif_video.hub import shipped_model
from motif_video.vocabulary import folder_vocabulary, prompt_warning, scene_roles, unknown_words

SMALL = folder_vocabulary(shipped_model("small"))
# one frame in one step of the shipped small model: enough for its warnings and for the frames a prompt gives
GENERATE_SMALL = [
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
    assert (
        "text (max)                                    64" in out
    )  # the folder's token budget, not the 2B's
    assert "I2V (16 image tokens)" in out
    assert cli.main(["info", "small", "--size", "64x64x33", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vocabulary"] == SMALL
    assert (summary["tokens"]["text (max)"], summary["tokens"]["image (I2V)"]) == (64, 16)
    assert summary["tokens"]["joint I2V"] == 144 + 64 + 16
    assert cli.main(["info", "small", "--json", "--image-tokens", "4096", "--text-tokens", "512"]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert asked["flops"]["i2v"]["per_forward"] > 20 * summary["flops"]["i2v"]["per_forward"]
    assert cli.main(["info", "small", "--image-tokens", "-1"]) == 2
    assert "--image-tokens must be >= 0, got -1" in capsys.readouterr().err
    assert cli.main(["info", "tiny", "--size", "64x64x9"]) == 0
    assert "vocabulary" not in capsys.readouterr().out


def test_generate_warns_about_words_the_small_model_does_not_know(tmp_path, capsys):
    assert (
        cli.main(
            [*GENERATE_SMALL, "--prompt", "a cat playing the piano", "--output", str(tmp_path / "a.mp4")]
        )
        == 0
    )
    assert "warning: prompt 0: the model does not know the word(s) 'cat', 'playing', 'the', 'piano'" in (
        capsys.readouterr().out
    )
    assert cli.main([*GENERATE_SMALL, "--prompt", "a red circle moving left on a black background",
                     "--output", str(tmp_path / "b.mp4")]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().out


def test_an_reads_as_a_where_the_vocabulary_has_only_a():
    from transformers import AutoTokenizer

    from motif_video.training.tokenizer import train_word_tokenizer, word_tokenizer

    tok = AutoTokenizer.from_pretrained(shipped_model("small") / "tokenizer")
    assert tok("An orange circle").input_ids == tok("a orange circle").input_ids
    assert tok.unk_token_id not in tok("an orange circle").input_ids
    normalize = tok.backend_tokenizer.normalizer.normalize_str
    assert normalize("Banana and AN ant, an") == "banana and a ant, a"  # whole words only
    trained = train_word_tokenizer(["a red circle"])
    assert trained("an red circle").input_ids == trained("a red circle").input_ids
    assert trained.unk_token_id not in trained("an red circle").input_ids
    both = word_tokenizer(["a", "an", "apple"])  # a vocabulary with its own "an" keeps it
    assert both("an apple").input_ids == [2, 5, 6] and both("a apple").input_ids == [2, 4, 6]


def test_generate_takes_an_as_the_small_models_a(tmp_path, capsys):
    from motif_video.pipelines.export import read_mp4_frames

    for name, article in (("an.mp4", "An"), ("a.mp4", "a")):
        prompt = f"{article} orange circle moving left on a black background"
        assert cli.main([*GENERATE_SMALL, "--prompt", prompt, "--output", str(tmp_path / name)]) == 0
        assert "warning" not in capsys.readouterr().out
    assert (read_mp4_frames(tmp_path / "an.mp4") == read_mp4_frames(tmp_path / "a.mp4")).all()
