"""The words a model knows, for models whose tokenizer is a closed word list (the shipped small model's), and the
warning for a prompt that uses others: such words map to the unknown token, so the model cannot follow them.

Subword tokenizers (the released model's Gemma tokenizer) can spell any word: no vocabulary, no warning. For a model
trained on the procedural scenes (`motif_video.synthetic.scenes`) the words are also sorted by what they name, and a
known word in a role the model never saw (e.g. "blue background": blue is an object colour only) is warned about.

Pure Python (json, re): reading a vocabulary needs neither torch nor transformers.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

WORD = re.compile(r"\w+|[^\w\s]+")  # the tokenizers library's Whitespace pre-tokenizer


def vocabulary_of_json(tokenizer_json: dict[str, Any]) -> list[str] | None:
    """The words of a word-level tokenizer (its special tokens left out); None for any other kind."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "WordLevel":
        return None
    special = {t.get("content") for t in tokenizer_json.get("added_tokens") or []} | {model.get("unk_token")}
    return sorted(w for w in model.get("vocab", {}) if w not in special and not re.fullmatch(r"<[^>]*>", w))


def _tokenizer_json(folder: str | os.PathLike | None) -> Path | None:
    """A model folder's `tokenizer/tokenizer.json`, None when there is no such file (or no folder)."""
    path = Path(folder) / "tokenizer" / "tokenizer.json" if folder is not None else None
    return path if path is not None and path.is_file() else None


def folder_vocabulary(folder: str | os.PathLike) -> list[str] | None:
    """The vocabulary of a model folder's `tokenizer/tokenizer.json` (None: no such file, or not a word list)."""
    path = _tokenizer_json(folder)
    return vocabulary_of_json(json.loads(path.read_text(encoding="utf-8"))) if path is not None else None


def folder_prompt_check(folder: str | os.PathLike | None):
    """For a model folder whose tokenizer is a closed word list (the small model's): prompt -> `prompt_warning`
    of the prompt as its tokenizer reads it; None for any other folder (or none)."""
    path = _tokenizer_json(folder)
    if path is None:
        return None
    from tokenizers import Tokenizer

    return prompt_check(Tokenizer.from_file(str(path)))


def prompt_check(tokenizer: Any):
    """prompt -> `prompt_warning` of the prompt as `tokenizer` reads it (a pipeline's `tokenizer`, or a
    `tokenizers.Tokenizer`); None when its vocabulary is not a closed word list (nothing to check against)."""
    vocabulary = tokenizer_vocabulary(tokenizer)
    if vocabulary is None:
        return None
    return lambda prompt: prompt_warning(as_tokenized(tokenizer, prompt), vocabulary)


def tokenizer_vocabulary(tokenizer: Any) -> list[str] | None:
    """The vocabulary of a loaded fast tokenizer (a pipeline's `tokenizer`) or a `tokenizers.Tokenizer`, None when
    it is not a word list."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not hasattr(backend, "to_str"):
        return None
    return vocabulary_of_json(json.loads(backend.to_str()))


def as_tokenized(tokenizer: Any, prompt: str) -> str:
    """The prompt as the tokenizer's normalizer reads it (the small model's: lower-cased, "an" as "a"); unchanged
    for a tokenizer without one. `tokenizer`: a loaded fast tokenizer or a `tokenizers.Tokenizer`."""
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", tokenizer), "normalizer", None)
    return prompt if normalizer is None else normalizer.normalize_str(prompt)


def unknown_words(prompt: str, vocabulary: list[str] | set[str]) -> list[str]:
    """The prompt's words (lower-cased, in order, once each) that are not in `vocabulary`; punctuation ignored."""
    known = set(vocabulary)
    seen: list[str] = []
    for word in WORD.findall(prompt.lower()):
        if word.isalnum() and word not in known and word not in seen:
            seen.append(word)
    return seen


def scene_roles(vocabulary: list[str]) -> dict[str, list[str]] | None:
    """For a model trained on the procedural scenes: its words grouped by what they name (colours, shapes, motions,
    backgrounds, other); None when the vocabulary is not that one."""
    from .synthetic.scenes import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES

    words = set(vocabulary)
    labels = {*COLOURS, *BACKGROUNDS, *SHAPES, *DIRECTIONS}
    if not labels <= words:
        return None
    motions = [*DIRECTIONS, *(w for w in ("growing", "grows") if w in words)]
    named = {*COLOURS, *BACKGROUNDS, *SHAPES, *motions}
    return {
        "object colours": list(COLOURS),
        "shapes": list(SHAPES),
        "motions": motions,
        "backgrounds": list(BACKGROUNDS),
        "other words": sorted(words - named),
    }


def describe_vocabulary(vocabulary: list[str]) -> str:
    """Lines for `motif-video info`: the words, by role when the model is a procedural-scene one."""
    roles = scene_roles(vocabulary)
    if roles is None:
        return f"vocabulary ({len(vocabulary)} words): {', '.join(vocabulary)}"
    lines = [f"vocabulary ({len(vocabulary)} words; any other word is unknown to the model):"]
    lines += [f"  {role}: {', '.join(words)}" for role, words in roles.items()]
    return "\n".join(lines)


def prompt_warning(prompt: str, vocabulary: list[str] | None) -> str | None:
    """A warning for words the model cannot follow (None when there are none, or the tokenizer spells any word)."""
    if vocabulary is None:
        return None
    problems = []
    unknown = unknown_words(prompt, vocabulary)
    if unknown:
        problems.append(f"does not know the word(s) {', '.join(map(repr, unknown))}")
    roles = scene_roles(vocabulary)
    if roles is not None:
        words = WORD.findall(prompt.lower())
        for before, word in itertools.pairwise(words):
            if word == "background" and before in vocabulary and before not in roles["backgrounds"]:
                problems.append(
                    f"has no {before!r} background (backgrounds: {', '.join(roles['backgrounds'])})"
                )
    if not problems:
        return None
    return (
        f"the model {'; '.join(problems)}, so it will not follow that part of the prompt; "
        f"its {len(vocabulary)} words: {', '.join(vocabulary)}"
    )
