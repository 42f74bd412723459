"""Which label combinations the small model's training data leaves out: the one definition the evaluation suites
and the recipe's clip stages read.

A combination is a (colour, shape, background) triple; the motion is free. Twelve of the 81 triples are held out,
one per (shape, background) pair, so that every colour, shape and background, and every pair of them, is still
trained on in other triples: a held-out prompt asks for a new combination of known words. Half of them are the test
set (the reported figures), half the validation set (for choosing between builds, never reported as the result).
`recipes/small` leaves both out of its clip stages (the transformer's data); the VAE, which sees no captions,
trains on every combination.
"""

from __future__ import annotations

from typing import Protocol

Triple = tuple[str, str, str]  # (colour, shape, background)

HELD_OUT_TEST: frozenset[Triple] = frozenset(
    {
        ("yellow", "circle", "black"),
        ("green", "circle", "white"),
        ("blue", "square", "gray"),
        ("white", "square", "navy"),
        ("orange", "triangle", "black"),
        ("blue", "triangle", "white"),
    }
)
HELD_OUT_VALIDATION: frozenset[Triple] = frozenset(
    {
        ("purple", "circle", "gray"),
        ("orange", "circle", "navy"),
        ("purple", "square", "black"),
        ("red", "square", "white"),
        ("green", "triangle", "gray"),
        ("yellow", "triangle", "navy"),
    }
)
HELD_OUT: frozenset[Triple] = HELD_OUT_TEST | HELD_OUT_VALIDATION


class Labelled(Protocol):
    colour: str
    shape: str
    background: str


def triple(scene: Labelled) -> Triple:
    return (scene.colour, scene.shape, scene.background)


def held_out(scene: Labelled) -> bool:
    """Whether training data must leave `scene` out."""
    return triple(scene) in HELD_OUT
