"""Train a word-level tokenizer on a caption vocabulary with the `tokenizers` package, with Gemma's special ids
(pad 0, eos 1, bos 2, unk 3), lower-casing, BOS only (no EOS) and right padding, as the released pipeline expects."""

from __future__ import annotations

from collections.abc import Iterable

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def train_word_tokenizer(captions: Iterable[str], model_max_length: int = 64):
    """A `PreTrainedTokenizerFast` whose vocabulary is every word of `captions` (after the four special tokens)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        list(captions), trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1)
    )
    for i, special in enumerate(SPECIALS):
        if tok.token_to_id(special) != i:
            raise ValueError(f"special token {special!r} got id {tok.token_to_id(special)}, expected {i}")
    from ..testing import gemma_style_tokenizer

    return gemma_style_tokenizer(tok, model_max_length)
