"""The held-out split and the suites drawn from it."""

from itertools import product

import pytest

from motif_video.evaluation.split import HELD_OUT, HELD_OUT_TEST, HELD_OUT_VALIDATION, held_out, triple
from motif_video.evaluation.suite import eval_suite, held_out_suite, prompt_suite
from motif_video.synthetic import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, scene_at

ALL = {(c, s, b) for c, s, b in product(COLOURS, SHAPES, BACKGROUNDS) if c != b}


def test_held_out_triples_leave_every_pair_of_labels_in_training():
    assert len(HELD_OUT_TEST) == len(HELD_OUT_VALIDATION) == 6 and not HELD_OUT_TEST & HELD_OUT_VALIDATION
    assert HELD_OUT <= ALL
    assert sorted((s, b) for _, s, b in HELD_OUT) == sorted(product(SHAPES, BACKGROUNDS))  # one per pair
    trained = ALL - HELD_OUT
    for c, s, b in HELD_OUT:  # each pair of the held-out triple is still in some trained triple
        assert any(t[:2] == (c, s) for t in trained)
        assert any((t[0], t[2]) == (c, b) for t in trained)
        assert any(t[1:] == (s, b) for t in trained)


def test_suites_keep_groups_and_splits_apart():
    for split, triples in (("test", HELD_OUT_TEST), ("validation", HELD_OUT_VALIDATION)):
        cases = eval_suite(30, split)
        seen, held = cases[:30], cases[30:]
        assert all(c.group == "seen" and not held_out(c.scene) for c in seen)
        assert all(c.group == "held_out" and triple(c.scene) in triples for c in held)
        # 30 held-out cases: every (combination, motion) pair once
        assert sorted((triple(c.scene), c.scene.motion) for c in held) == sorted(product(triples, MOTIONS))
        assert all(c.prompt.startswith(f"a {c.scene.colour} {c.scene.shape} ") for c in cases)
    test, validation = eval_suite(30, "test"), eval_suite(30, "validation")
    assert not {c.scene for c in test} & {c.scene for c in validation}
    training = {scene_at(0, i) for i in range(1200)}  # the recipe's clip stream
    assert not training & {c.scene for c in test + validation}
    assert [c.scene for c in prompt_suite(5)] == [c.scene for c in eval_suite(5)[:5]]
    assert held_out_suite(3) == held_out_suite(3)


def test_suite_arguments_are_checked():
    with pytest.raises(ValueError, match="split 'train'"):
        eval_suite(2, "train")
    with pytest.raises(ValueError, match=">= 1"):
        held_out_suite(0)


def test_excluded_combinations_are_redrawn_and_other_scenes_kept():
    plain = [scene_at(0, i) for i in range(300)]
    kept = [scene_at(0, i, exclude=HELD_OUT) for i in range(300)]
    assert not any(held_out(s) for s in kept)
    redrawn = [i for i, s in enumerate(plain) if held_out(s)]
    assert 0 < len(redrawn) < 60  # 12 of 81 combinations: about 15 %
    assert all(a == b for i, (a, b) in enumerate(zip(plain, kept)) if i not in redrawn)
