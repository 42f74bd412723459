import random

import numpy as np
import pytest
from recipes.small.clips import NARROW

from motif_video.synthetic import BACKGROUNDS, COLOURS, Scene, caption, parse_caption, render, scene_at
from motif_video.synthetic.scenes import GROWTH, VARIED, SceneRanges, coverage


def test_scenes_are_deterministic_and_varied():
    assert scene_at(3, 7) == scene_at(3, 7)
    scenes = [scene_at(0, i) for i in range(200)]
    assert {s.shape for s in scenes} == {"circle", "square", "triangle"}
    assert {s.motion for s in scenes} == {"left", "right", "up", "down", "grows"}
    assert len({s.colour for s in scenes}) >= 6 and len({s.background for s in scenes}) == 4
    assert np.array_equal(render(scenes[0], 9, 32, 32), render(scene_at(0, 0), 9, 32, 32))


@pytest.mark.parametrize("ranges", [VARIED, NARROW], ids=["varied", "narrow"])
def test_objects_travel_through_the_centre_and_stay_inside(ranges):
    for i in range(500):
        scene = scene_at(1, i, ranges)
        (x0, y0), (x1, y1) = scene.start, scene.end()
        middle = ((x0 + x1) / 2, (y0 + y1) / 2)
        assert max(abs(middle[0] - 0.5), abs(middle[1] - 0.5)) <= ranges.jitter + 1e-4, scene
        low, high = ranges.grow_radius if scene.motion == "grows" else ranges.radius
        assert low - 1e-4 <= scene.radius <= high + 1e-4, scene
        radius = scene.radius * (GROWTH if scene.motion == "grows" else 1.0)
        for x, y in (scene.start, scene.end()):
            assert radius <= x <= 1 - radius and radius <= y <= 1 - radius, scene
    offsets = {scene_at(1, i, ranges).start for i in range(50)}
    assert len(offsets) == 50  # jittered, not fixed


def test_narrow_ranges_keep_the_labels_and_vary_less():
    varied, narrow = [[scene_at(2, i, r) for i in range(300)] for r in (VARIED, NARROW)]
    assert [(s.shape, s.colour, s.background, s.motion) for s in varied] == [
        (s.shape, s.colour, s.background, s.motion) for s in narrow
    ]
    moving = [(v.radius, n.radius) for v, n in zip(varied, narrow) if v.motion != "grows"]
    assert np.std([n for _, n in moving]) < 0.5 * np.std([v for v, _ in moving])


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"radius": (0.2, 0.3), "grow_radius": (0.14, 0.15), "jitter": 0.02}, "radius"),
        ({"radius": (0.22, 0.2), "grow_radius": (0.14, 0.15), "jitter": 0.02}, "radius"),
        ({"radius": (0.2, 0.22), "grow_radius": (0.0, 0.15), "jitter": 0.02}, "grow_radius"),
        ({"radius": (0.2, 0.22), "grow_radius": (0.14, 0.15), "jitter": 0.1}, "jitter"),
    ],
)
def test_scene_ranges_that_could_leave_the_frame_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SceneRanges(**kwargs)


@pytest.mark.parametrize("index", range(12))
def test_labels_match_pixels(index):
    scene = scene_at(11, index)
    video = render(scene, 17, 64, 64)
    # background: every border pixel far from the object has the background colour
    assert (
        tuple(video[0, 0, 0]) == BACKGROUNDS[scene.background]
        or tuple(video[0, -1, -1]) == BACKGROUNDS[scene.background]
    )
    for frame in (0, 8, 16):
        a = coverage(scene, frame, 17, 64, 64)
        inside = a == 1.0
        assert inside.sum() > 20
        assert (video[frame][inside] == COLOURS[scene.colour]).all()
        assert (video[frame][a == 0.0] == BACKGROUNDS[scene.background]).all()
    ys0, xs0 = np.nonzero(coverage(scene, 0, 17, 64, 64) >= 0.5)
    ys1, xs1 = np.nonzero(coverage(scene, 16, 17, 64, 64) >= 0.5)
    dx, dy = xs1.mean() - xs0.mean(), ys1.mean() - ys0.mean()
    expected = {
        "left": dx < -10,
        "right": dx > 10,
        "up": dy < -10,
        "down": dy > 10,
        "grows": len(xs1) > 2 * len(xs0),
    }
    assert expected[scene.motion]
    fill = len(xs0) / ((np.ptp(xs0) + 1) * (np.ptp(ys0) + 1))
    assert {"square": fill > 0.9, "circle": 0.7 < fill < 0.86, "triangle": 0.4 < fill < 0.62}[scene.shape]


def test_caption_names_the_labels():
    rng = random.Random(0)
    for _ in range(30):
        scene = scene_at(rng.randrange(100), rng.randrange(100))
        for template in range(3):
            found = parse_caption(caption(scene, template))
            assert found == {
                "colour": scene.colour,
                "shape": scene.shape,
                "motion": scene.motion,
                "background": scene.background,
            }


def test_bad_scene_values_are_named():
    with pytest.raises(ValueError, match="hexagon"):
        Scene("hexagon", "red", "black", "left", 0.1, (0.5, 0.5))
    with pytest.raises(ValueError, match="equals the background"):
        Scene("circle", "white", "white", "left", 0.1, (0.5, 0.5))
