import random

import numpy as np
import pytest
from recipes.small.clips import NARROW

from motif_video.synthetic import BACKGROUNDS, COLOURS, Scene, caption, parse_caption, render, scene_at
from motif_video.synthetic.scenes import GROWTH, VARIED, SceneRanges, advance, coverage


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


def test_advance_is_the_same_scene_later_on_its_path():
    moving = [s for s in (scene_at(4, i) for i in range(40)) if s.motion != "grows"][:8]
    for scene in moving:
        assert advance(scene, 0) == scene
        later = advance(scene, 0.75)  # a 4x extension's second window starts at frame 24 of 33
        assert (later.shape, later.colour, later.background, later.motion, later.radius) == (
            scene.shape, scene.colour, scene.background, scene.motion, scene.radius
        )  # fmt: skip
        first, truth = render(later, 33, 64, 64)[0], render(scene, 33, 64, 64)[24]
        assert np.abs(first.astype(int) - truth.astype(int)).max() <= 2  # start rounded to 4 decimals
        assert np.allclose(advance(scene, 1).start, scene.end(), atol=1e-4)
        gone = render(advance(scene, 3.0), 33, 64, 64)  # 1.2 frame sides on: past the edge
        assert (gone == np.array(BACKGROUNDS[scene.background], np.uint8)).all()
    growing = next(s for s in (scene_at(4, i) for i in range(40)) if s.motion == "grows")
    for clips in (0.75, 1.0, 2.5):  # goes on growing as fast: a later window's frames are the long clip's
        later = advance(growing, clips)
        assert later.radius > growing.radius and 1 < later.growth < growing.growth
        long = np.concatenate([render(growing, 33, 64, 64), render(advance(growing, 1), 33, 64, 64)[1:]])
        start = round(clips * 32)
        if clips * 32 == start and start + 33 <= len(long):
            assert np.abs(render(later, 33, 64, 64).astype(int) - long[start : start + 33]).max() <= 2
    assert advance(growing, 1).radius == pytest.approx(growing.radius * GROWTH, abs=1e-6)
    with pytest.raises(ValueError, match="-0.5"):
        advance(moving[0], -0.5)


def test_grown_clips_are_growing_scenes_seen_later(tmp_path):
    import json

    from recipes.small.clips import NARROW, write_grown_clips

    paths = write_grown_clips(tmp_path / "a", 4, seed=7, ranges=NARROW, advance_range=(0.25, 1.25), frames=9,
                              height=32, width=32)  # fmt: skip
    assert [p.name for p in paths] == [f"clip-{10000 + i}.mp4" for i in range(4)]
    labels = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    assert all(lab["motion"] == "grows" for lab in labels)
    # advanced 0.25-1.25 clip lengths: 1.25-2.25x the narrow start size, growing by less than GROWTH
    assert all(1.25 * 0.14 <= lab["radius"] <= 2.25 * 0.15 and 1 < lab["growth"] < GROWTH for lab in labels)
    assert all("grow" in p.with_suffix(".txt").read_text() for p in paths)
    again = write_grown_clips(tmp_path / "b", 4, seed=7, ranges=NARROW, advance_range=(0.25, 1.25), frames=9,
                              height=32, width=32)  # fmt: skip
    assert labels == [json.loads(p.with_suffix(".json").read_text()) for p in again]


def test_clips_written_along_their_paths(tmp_path):
    import json

    from recipes.small.clips import PATH_ADVANCE, write_clips

    paths = write_clips(tmp_path / "a", 12, frames=9, height=32, width=32, advance_range=PATH_ADVANCE)
    again = write_clips(tmp_path / "b", 12, frames=9, height=32, width=32, advance_range=PATH_ADVANCE)
    labels = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    assert labels == [
        json.loads(p.with_suffix(".json").read_text()) for p in again
    ]  # a function of seed and index
    plain = [scene_at(0, i) for i in range(12)]
    moved = [lab["start"] != list(s.start) for lab, s in zip(labels, plain) if s.motion != "grows"]
    assert sum(moved) >= len(moved) - 1  # (a draw of 0 exactly is possible, not likely)
    for lab, s in zip(labels, plain):
        assert lab["motion"] == s.motion and lab["radius"] == s.radius
        if s.motion == "grows":
            assert lab["start"] == list(s.start)
    grown = write_clips(tmp_path / "d", 12, frames=9, height=32, width=32, advance_range=(1.0, 1.0),
                        advance_growing=True)  # fmt: skip
    for lab, s in zip([json.loads(p.with_suffix(".json").read_text()) for p in grown], plain):
        if s.motion == "grows":  # one clip length on: twice the size, growing 1.5x
            assert (lab["radius"], lab["growth"]) == (pytest.approx(2 * s.radius), 1.5)
    with pytest.raises(ValueError, match="advance_range"):
        write_clips(tmp_path / "c", 1, advance_range=(1.0, 0.5))


def test_wrapped_scenes_come_back_in_at_the_opposite_edge():
    from motif_video.synthetic.scenes import wrapped

    moving = [s for s in (scene_at(5, i) for i in range(40)) if s.motion != "grows"][:8]
    for scene in moving:
        ring = wrapped(scene, 0.9)
        assert ring.wrap and (ring.shape, ring.colour, ring.motion, ring.radius) == (
            scene.shape, scene.colour, scene.motion, scene.radius
        )  # fmt: skip
        along = 0 if scene.motion in ("left", "right") else 1
        assert ring.start[along] == 0.9 and ring.start[1 - along] == scene.start[1 - along]
        # the object's area is kept in every frame, and whole laps bring back the same frames
        clip = [coverage(ring, i, 33, 64, 64) for i in range(33)]
        assert max(abs(c.sum() - clip[0].sum()) for c in clip) < 0.03 * clip[0].sum()  # anti-aliasing only
        for laps in (1, 2):  # TRAVEL 0.4: 2.5 clip lengths are one lap
            later = render(advance(ring, 2.5 * laps), 33, 64, 64)
            assert np.abs(later.astype(int) - render(ring, 33, 64, 64).astype(int)).max() <= 2
        # at 0.9 of the frame the object is split over both edges in the moving axis
        edges = (clip[0][:, :2], clip[0][:, -2:]) if along == 0 else (clip[0][:2], clip[0][-2:])
        if scene.motion in ("right", "down"):
            assert edges[0].sum() > 0 and edges[1].sum() > 0
    # without wrap the same scene leaves the frame
    plain = advance(moving[0], 3.0)
    assert coverage(plain, 0, 33, 64, 64).sum() == 0
    grows = next(s for s in (scene_at(5, i) for i in range(40)) if s.motion == "grows")
    assert wrapped(grows, 0.3) == grows
    with pytest.raises(ValueError, match="1.2"):
        wrapped(moving[0], 1.2)
    with pytest.raises(ValueError, match="wrap needs a moving scene"):
        Scene("circle", "red", "black", "grows", 0.1, (0.5, 0.5), wrap=True)


def test_wrapped_clips_are_placed_anywhere_along_their_motion(tmp_path):
    import json

    from recipes.small.clips import write_clips

    from motif_video.synthetic.scenes import wrapped

    paths = write_clips(tmp_path / "a", 30, frames=9, height=32, width=32, wrap=True)
    labels = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    places = []
    for lab, s in zip(labels, (scene_at(0, i) for i in range(30))):
        assert lab["wrap"] == (s.motion != "grows")
        if lab["wrap"]:
            place = lab["start"][0 if s.motion in ("left", "right") else 1]
            places.append(place)
            assert Scene(**{**lab, "start": tuple(lab["start"])}) == wrapped(
                s, place
            )  # the labels are the scene
    assert min(places) < 0.25 and max(places) > 0.75  # uniform over the ring, not near the caption's path


def test_captions_can_leave_out_the_colour_or_the_background():
    scenes = [scene_at(6, i) for i in range(40)]
    for scene in (
        next(s for s in scenes if s.motion == "grows"),
        next(s for s in scenes if s.motion != "grows"),
    ):
        for template in range(3):
            full = parse_caption(caption(scene, template))
            no_colour = parse_caption(caption(scene, template, omit="colour"))
            no_background = parse_caption(caption(scene, template, omit="background"))
            assert no_colour == {**full, "colour": None}, caption(scene, template, omit="colour")
            assert no_background == {**full, "background": None}, caption(scene, template, omit="background")
            assert "  " not in caption(scene, template, omit="background")
    with pytest.raises(ValueError, match="'shape'"):
        caption(scenes[0], omit="shape")


def test_clips_with_partial_captions(tmp_path):
    import json

    from recipes.small.clips import write_clips

    paths = write_clips(tmp_path / "a", 40, frames=5, height=16, width=16, partial_captions=0.5)
    plain = write_clips(tmp_path / "b", 40, frames=5, height=16, width=16)
    left_out = {"colour": 0, "background": 0}
    for path, other in zip(paths, plain):
        labels = json.loads(path.with_suffix(".json").read_text())
        assert labels == json.loads(other.with_suffix(".json").read_text())  # the same scenes
        assert path.read_bytes() == other.read_bytes()
        named = parse_caption(path.with_suffix(".txt").read_text())
        assert named["shape"] == labels["shape"] and named["motion"] == labels["motion"]
        missing = [k for k in left_out if named[k] is None]
        assert len(missing) <= 1 and all(named[k] == labels[k] for k in left_out if k not in missing)
        for k in missing:
            left_out[k] += 1
        assert parse_caption(other.with_suffix(".txt").read_text())["colour"] == labels["colour"]
    # about half of 40 clips lose a word, split between colour and background
    assert 10 <= sum(left_out.values()) <= 30 and min(left_out.values()) >= 4, left_out
    with pytest.raises(ValueError, match="partial_captions"):
        write_clips(tmp_path / "c", 1, partial_captions=1.5)


def test_tinted_colours_stay_nearest_their_names():
    from motif_video.evaluation.analysis import nearest
    from motif_video.synthetic.scenes import TINT_MAX, tinted_colours

    moved = []
    for index in range(200):
        scene = scene_at(0, index)
        fg, bg = tinted_colours(scene, random.Random(f"tint-0-{index}"))
        again = tinted_colours(scene, random.Random(f"tint-0-{index}"))
        assert np.array_equal(fg, again[0]) and np.array_equal(bg, again[1])  # a function of the draw
        assert nearest(fg, COLOURS) == scene.colour and nearest(bg, BACKGROUNDS) == scene.background
        assert np.linalg.norm(fg - COLOURS[scene.colour]) <= TINT_MAX["object"] + 1e-6
        assert np.linalg.norm(bg - BACKGROUNDS[scene.background]) <= TINT_MAX["background"] + 1e-6
        moved.append(np.linalg.norm(fg - COLOURS[scene.colour]))
    # the offsets fill the ball: most colours move visibly, none by more than the cap
    assert np.median(moved) > 10


def test_tinted_clips_are_the_same_scenes_in_nearby_colours(tmp_path):
    from recipes.small.clips import write_clips

    from motif_video.evaluation.analysis import read_clip
    from motif_video.pipelines.export import read_mp4_frames

    tinted = write_clips(tmp_path / "a", 12, frames=5, height=64, width=64, tint=True)
    plain = write_clips(tmp_path / "b", 12, frames=5, height=64, width=64)
    differ = 0
    for path, other in zip(tinted, plain):
        assert path.with_suffix(".txt").read_text() == other.with_suffix(".txt").read_text()
        assert path.with_suffix(".json").read_text() == other.with_suffix(".json").read_text()
        a, b = read_mp4_frames(path), read_mp4_frames(other)
        differ += int(np.abs(a.astype(int) - b).max() > 8)
        labels = parse_caption(path.with_suffix(".txt").read_text())
        reading = read_clip(a)
        assert (reading.colour, reading.background) == (labels["colour"], labels["background"])
    assert differ >= 10  # nearly every clip's colours moved
