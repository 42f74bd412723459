"""One range type for options, recipe keys and command flags: what it allows, its words and its schema."""

import math

import pytest

from motif_video.bounds import Bounds, above, at_least, within
from motif_video.options import OPTIONS, request_schema


@pytest.mark.parametrize(
    "bounds, words, allowed, refused",
    [
        (at_least(1), ">= 1", [1, 2.5, 1e9], [0, 0.999, -1]),
        (above(0), "> 0", [1e-9, 3], [0, -1e-9]),
        (within(0, 1), "in [0, 1]", [0, 0.5, 1], [-0.1, 1.01]),
        (within(0, 1, high_open=True), "in [0, 1)", [0, 0.999], [1, -1]),
        (within(0, 3600, low_open=True), "in (0, 3600]", [0.1, 3600], [0, 3600.5]),
        (Bounds(high=10), "<= 10", [-5, 10], [10.5]),
        (within(0, 2**63 - 1), "in [0, 9223372036854775807]", [2**62], [-1]),
        (at_least(0.25), ">= 0.25", [0.25], [0.2]),
        (
            within(0, 240, low_open=True),
            "in (0, 240]",
            [1, 240.0],
            [10**400, -(10**400)],
        ),  # ints past a float
    ],
)
def test_bounds_allow_refuse_and_say_so(bounds, words, allowed, refused):
    assert str(bounds) == words
    for value in allowed:
        assert bounds.allows(value) and bounds.check("x", value) == value
    for value in [*refused, math.nan, math.inf, -math.inf]:
        assert not bounds.allows(value)
        with pytest.raises(ValueError) as exc:
            bounds.check("x", value)
        assert str(exc.value) == f"x must be {words}, got {value}"


def test_bounds_schema_keywords():
    assert at_least(1).schema() == {"minimum": 1}
    assert above(0).schema() == {"exclusiveMinimum": 0}
    assert within(0, 1, low_open=True, high_open=True).schema() == {
        "exclusiveMinimum": 0,
        "exclusiveMaximum": 1,
    }


def test_options_check_and_schema_from_their_bounds():
    """The request check, its message and the JSON schema are all read from an option's one `bounds`."""
    strength, fps = OPTIONS["strength"], OPTIONS["fps"]
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\], got 1.5"):
        strength.check(1.5)
    assert strength.check(1.0) == 1.0
    with pytest.raises(ValueError, match=r"fps must be in \(0, 240\], got 0"):
        fps.check(0)
    schema = request_schema(["video"])["properties"]
    assert {k: schema["strength"][k] for k in ("exclusiveMinimum", "maximum")} == {
        "exclusiveMinimum": 0,
        "maximum": 1,
    }
    assert schema["seed"]["maximum"] == 2**63 - 1 and schema["steps"]["minimum"] == 1
