"""Prompt encoding with the T5Gemma2 encoder: BOS only, at most 512 tokens, padding trimmed away.

Prompts are padded only to the longest prompt in the call (not to 512): the encoder is bidirectional with an attention
mask, so valid-token embeddings do not depend on how much padding follows (verified to 7e-7), and the transformer then
trims the remaining padding and attends without a mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

MAX_SEQUENCE_LENGTH = 512

# The "trained" negative prompt of the official workflows (reference-implementation.md 1.8), 39 terms.
DEFAULT_NEGATIVE_PROMPT = (
    "text overlay, graphic overlay, watermark, logo, subtitles, timestamp, broadcast graphics, UI elements, "
    "random letters, frozen pose, rigid, static expression, jerky motion, mechanical motion, discontinuous motion, "
    "flat framing, depthless, dull lighting, monotone, crushed shadows, blown-out highlights, shifting background, "
    "fading background, poor continuity, identity drift, deformation, flickering, ghosting, smearing, duplication, "
    "mutated proportions, inconsistent clothing, flat colors, desaturated, tonally compressed, "
    "poor background separation, exposure shift, uneven brightness, color balance shift"
)


@dataclass
class PromptEmbeds:
    """Text states [B, L, D] and their mask [B, L] (True = valid), L = longest prompt in the batch. `full_length`:
    the length diffusers' pipeline holds them at, which a step callback is shown (encoded prompts are padded to
    `max_sequence_length` there); None: their own."""

    embeds: torch.Tensor
    mask: torch.Tensor
    full_length: int | None = None

    def repeat_interleave(self, n: int) -> PromptEmbeds:
        if n == 1:
            return self
        return PromptEmbeds(
            self.embeds.repeat_interleave(n, dim=0), self.mask.repeat_interleave(n, dim=0), self.full_length
        )

    def padded(self) -> PromptEmbeds:
        """These embeddings at `full_length` (zero states, masked), as diffusers' pipeline holds them."""
        return self if self.full_length is None else pad_to(self, self.full_length)

    def trimmed(self) -> PromptEmbeds:
        """These embeddings without the trailing positions that no row attends to (the padding)."""
        valid = self.mask.any(dim=0).nonzero()
        length = int(valid[-1]) + 1 if valid.numel() else self.mask.shape[1]
        return PromptEmbeds(self.embeds[:, :length], self.mask[:, :length], self.full_length)


def as_prompt_list(prompt: str | list[str] | None, name: str = "prompt") -> list[str]:
    """`prompt` as a list of strings; anything else (None, a number, bytes, a list holding other things) is a
    ValueError naming its type, as diffusers' check gives one."""
    items = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(items, list | tuple) or not items or not all(isinstance(p, str) for p in items):
        raise ValueError(
            f"{name} must be a non-empty string or list of strings, got {type(prompt).__name__} {prompt!r}"
        )
    return list(items)


def tokenize(tokenizer, prompts: list[str], max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> dict:
    """Token ids and mask padded to the longest prompt (BOS added by the tokenizer), warning on truncation."""
    if not 1 <= max_sequence_length <= MAX_SEQUENCE_LENGTH:
        raise ValueError(
            f"max_sequence_length must be in 1..{MAX_SEQUENCE_LENGTH}, got {max_sequence_length}"
        )
    full = tokenizer(prompts, add_special_tokens=True, padding=False, truncation=False)["input_ids"]
    for i, ids in enumerate(full):
        if len(ids) > max_sequence_length:
            logger.warning(
                "prompt %d has %d tokens; the last %d were cut (the text encoder takes at most %d)",
                i,
                len(ids),
                len(ids) - max_sequence_length,
                max_sequence_length,
            )
    return tokenizer(
        prompts,
        padding="longest",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )


@torch.no_grad()
def encode_prompts(
    text_encoder,
    tokenizer,
    prompts: list[str],
    device: torch.device,
    dtype: torch.dtype | None = None,
    max_sequence_length: int = MAX_SEQUENCE_LENGTH,
) -> PromptEmbeds:
    """Encode prompts with the text encoder's last (normed) hidden state."""
    tokens = tokenize(tokenizer, prompts, max_sequence_length)
    ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    states = text_encoder(input_ids=ids, attention_mask=mask)[0]
    return PromptEmbeds(states.to(dtype=dtype or states.dtype), mask.bool())


def pad_to(prompt: PromptEmbeds, length: int) -> PromptEmbeds:
    """Right-pad text states (zeros, masked) to `length` tokens."""
    extra = length - prompt.embeds.shape[1]
    if extra <= 0:
        return prompt
    embeds = torch.nn.functional.pad(prompt.embeds, (0, 0, 0, extra))
    mask = torch.nn.functional.pad(prompt.mask, (0, extra), value=False)
    return PromptEmbeds(embeds, mask)


def concat(first: PromptEmbeds, second: PromptEmbeds) -> PromptEmbeds:
    """Stack two prompt batches along the batch axis, padding the shorter one."""
    length = max(first.embeds.shape[1], second.embeds.shape[1])
    a, b = pad_to(first, length), pad_to(second, length)
    return PromptEmbeds(torch.cat([a.embeds, b.embeds]), torch.cat([a.mask, b.mask]))
