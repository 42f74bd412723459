"""Word-level tokenizers with Gemma's special ids (pad 0, eos 1, bos 2, unk 3), lower-casing, BOS only (no EOS) and
right padding, as the released pipeline expects: from a fixed word list, or trained on captions with the
`tokenizers` package. A vocabulary with the article "a" and without "an" reads "an" as "a" (the procedural captions
say "a orange circle"; a user writes "an orange circle")."""

from __future__ import annotations

from collections.abc import Iterable

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def word_tokenizer(words: Iterable[str], model_max_length: int = 512):
    """A `PreTrainedTokenizerFast` whose vocabulary is the four special tokens, then `words` in order."""
    from tokenizers import Tokenizer, models

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    return gemma_style_tokenizer(
        Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>")), model_max_length
    )


def train_word_tokenizer(captions: Iterable[str], model_max_length: int = 64):
    """A `PreTrainedTokenizerFast` whose vocabulary is every word of `captions` (after the four special tokens)."""
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    _split_lowercase_words(tok)
    tok.train_from_iterator(
        list(captions), trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1)
    )
    for i, special in enumerate(SPECIALS):
        if tok.token_to_id(special) != i:
            raise ValueError(f"special token {special!r} got id {tok.token_to_id(special)}, expected {i}")
    return gemma_style_tokenizer(tok, model_max_length)


def _split_lowercase_words(tok) -> None:
    from tokenizers import normalizers, pre_tokenizers

    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()


def article_normalizer():
    """Lower-casing, then the word "an" read as "a"."""
    from tokenizers import Regex, normalizers

    return normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(r"\ban\b"), "a")])


def gemma_style_tokenizer(tok, model_max_length: int):
    """Wrap a word-level `tokenizers.Tokenizer` whose ids 0..3 are <pad>, <eos>, <bos>, <unk> as the released
    pipeline expects its tokenizer: lower-cased whitespace words ("an" read as "a" where the vocabulary has only "a"),
    BOS only (no EOS), right padding."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    _split_lowercase_words(tok)
    if tok.token_to_id("a") is not None and tok.token_to_id("an") is None:
        tok.normalizer = article_normalizer()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="right",
        model_max_length=model_max_length,
    )
