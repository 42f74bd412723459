"""One object (circle, square or triangle) of one colour moving left / right / up / down or growing, over a plain
background, with the labels kept and captions from templates. Everything is a pure function of a seed.

Geometry (pixels, frame size H x W): the object has half-size `radius` (circle radius, half the square's side,
half the triangle's base and height); its centre moves linearly from `start` to `end` over the clip, or stays at
`start` while `radius` grows linearly by `growth`x (`GROWTH`, or less for a later window of a growing scene:
`advance`). Edges are anti-aliased by 4x4 supersampling. A `wrap` scene's
frame is a ring along its motion: what leaves one edge comes back in at the opposite one, so its motion lasts for
ever (the video-extension clips, `wrapped`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace

import numpy as np

# Object colours (RGB) and background colours; names are caption words.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 50, 200),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "gray": (110, 110, 110),
    "white": (245, 245, 245),
    "navy": (20, 30, 90),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "grows")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
GROWTH = 2.0  # radius at the last frame / radius at the first frame, for "grows"
TRAVEL = 0.4  # distance travelled, as a fraction of the frame side
SUPERSAMPLE = 4

TEMPLATES = {
    "move": (
        "a {colour} {shape} moving {motion} on a {background} background",
        "a {colour} {shape} moves {motion} over a {background} background",
        "{background} background with a {colour} {shape} moving {motion}",
    ),
    "grow": (
        "a {colour} {shape} growing on a {background} background",
        "a {colour} {shape} grows over a {background} background",
        "{background} background with a {colour} {shape} growing",
    ),
}
# what `caption(..., omit=...)` cuts from the templates above for each label it may leave out
OMITTED = {
    "colour": ("{colour} ",),
    "background": (
        " on a {background} background",
        " over a {background} background",
        "{background} background with ",
    ),
}


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    background: str
    motion: str
    radius: float  # fraction of the frame's short side, at the first frame
    start: tuple[float, float]  # centre (x, y) at the first frame, fractions of width / height
    wrap: bool = False  # the object leaving one edge comes back in at the opposite one (moving scenes only)
    growth: float = GROWTH  # "grows": radius at the last frame / radius at the first (`advance` changes it)

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.shape, SHAPES, "shape"),
            (self.colour, tuple(COLOURS), "colour"),
            (self.background, tuple(BACKGROUNDS), "background"),
            (self.motion, MOTIONS, "motion"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} {value!r} is not one of {list(allowed)}")
        if self.colour == self.background:
            raise ValueError(f"colour {self.colour!r} equals the background; pick another")
        if self.wrap and self.motion == "grows":
            raise ValueError("wrap needs a moving scene; a growing object has no path to wrap")
        if not self.growth >= 1:
            raise ValueError(
                f"growth must be >= 1 (the radius at the last frame over the first), got {self.growth}"
            )

    def labels(self) -> dict[str, object]:
        return asdict(self)

    def end(self) -> tuple[float, float]:
        dx, dy = DIRECTIONS.get(self.motion, (0.0, 0.0))
        return (self.start[0] + dx * TRAVEL, self.start[1] + dy * TRAVEL)


# the largest ranges that keep every scene inside the frame (`VARIED` reaches them)
RANGE_LIMITS = {"radius": 0.24, "grow_radius": 0.16, "jitter": 0.06}


@dataclass(frozen=True)
class SceneRanges:
    """How much scenes with the same labels differ: the object's half-size (fraction of the frame's short side; for
    growing objects at the first frame) and the largest offset of its path from the centred one (fraction of the
    frame). Ranges beyond `RANGE_LIMITS` are refused."""

    radius: tuple[float, float]
    grow_radius: tuple[float, float]
    jitter: float

    def __post_init__(self) -> None:
        for name in ("radius", "grow_radius"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= RANGE_LIMITS[name]:
                raise ValueError(
                    f"{name} range {(low, high)} must satisfy 0 < low <= high <= {RANGE_LIMITS[name]}"
                )
        if not 0 <= self.jitter <= RANGE_LIMITS["jitter"]:
            raise ValueError(f"jitter {self.jitter} must be in [0, {RANGE_LIMITS['jitter']}]")


# the default ranges: the evaluation suite draws from them, and every stage of the small model but the last
# (recipes/small/clips.py: NARROW) trained on them
VARIED = SceneRanges(
    radius=(0.18, RANGE_LIMITS["radius"]),
    grow_radius=(0.13, RANGE_LIMITS["grow_radius"]),
    jitter=RANGE_LIMITS["jitter"],
)


def sample_scene(rng: random.Random, ranges: SceneRanges = VARIED) -> Scene:
    """A random scene. The object's path is centred on the frame (moving objects travel through the centre, growing
    ones grow there), give or take `ranges.jitter`, so that its place follows from the caption and a small model
    learns the colour, shape and motion words instead of having to guess where the object is. It stays inside the
    frame."""
    shape = rng.choice(SHAPES)
    background = rng.choice(sorted(BACKGROUNDS))
    colour = rng.choice([c for c in sorted(COLOURS) if c != background])
    motion = rng.choice(MOTIONS)
    radius = rng.uniform(*ranges.grow_radius) if motion == "grows" else rng.uniform(*ranges.radius)
    dx, dy = DIRECTIONS.get(motion, (0.0, 0.0))
    start = (
        0.5 - dx * TRAVEL / 2 + rng.uniform(-ranges.jitter, ranges.jitter),
        0.5 - dy * TRAVEL / 2 + rng.uniform(-ranges.jitter, ranges.jitter),
    )
    return Scene(
        shape, colour, background, motion, round(radius, 4), (round(start[0], 4), round(start[1], 4))
    )


def scene_at(
    seed: int,
    index: int,
    ranges: SceneRanges = VARIED,
    exclude: Collection[tuple[str, str, str]] = (),
) -> Scene:
    """The `index`-th scene of the stream drawn from `seed` (each independent of the others). With other `ranges`
    the same index has the same labels, only its size and place differ. A scene whose (colour, shape, background)
    is in `exclude` is drawn again from the same generator until it is not: the other indices keep their scenes."""
    rng = random.Random(seed * 1_000_003 + index)
    scene = sample_scene(rng, ranges)
    while (scene.colour, scene.shape, scene.background) in exclude:
        scene = sample_scene(rng, ranges)
    return scene


def advance(scene: Scene, clips: float) -> Scene:
    """The same scene `clips` clip lengths later, as a video extension's later windows see it: a moving object
    further along its path (from `clips` > 1 - 2 * radius / TRAVEL on it may leave the frame, and past that the
    clip is background only; a `wrap` scene's object comes back in at the opposite edge instead). A growing
    object goes on growing as fast (its radius by the same amount per frame): it starts larger and grows by a
    smaller factor, and from about one clip length on its object reaches past the frame's edges."""
    if clips < 0:
        raise ValueError(f"clips must be >= 0, got {clips}")
    if clips == 0:
        return scene
    if scene.motion == "grows":
        start, end = 1 + clips * (scene.growth - 1), 1 + (clips + 1) * (scene.growth - 1)
        return replace(scene, radius=round(scene.radius * start, 6), growth=end / start)
    dx, dy = DIRECTIONS[scene.motion]
    x, y = scene.start
    x, y = x + dx * TRAVEL * clips, y + dy * TRAVEL * clips
    if scene.wrap:  # the same place on the ring
        x, y = x % 1.0, y % 1.0
    return replace(scene, start=(round(x, 4), round(y, 4)))


def wrapped(scene: Scene, place: float) -> Scene:
    """`scene` on a ring (`Scene.wrap`) with its centre at `place` (a fraction of the frame, in [0, 1)) along its
    motion at the first frame; across the motion it keeps its place. A growing scene is returned unchanged."""
    if not 0 <= place < 1:
        raise ValueError(f"place must be in [0, 1), got {place}")
    if scene.motion == "grows":
        return scene
    x, y = scene.start
    start = (place, y) if scene.motion in ("left", "right") else (x, place)
    return replace(scene, start=(round(start[0], 4), round(start[1], 4)), wrap=True)


def caption(scene: Scene, template: int = 0, omit: str | None = None) -> str:
    """The scene's caption in template `template` (modulo the kind's templates); `omit` ("colour" or "background")
    leaves that label out ("a red square moving left" for a scene on white)."""
    if omit is not None and omit not in OMITTED:
        raise ValueError(f"omit {omit!r} is not one of {[None, *OMITTED]}")
    kind = "grow" if scene.motion == "grows" else "move"
    templates = TEMPLATES[kind]
    text = templates[template % len(templates)]
    for part in OMITTED.get(omit, ()):
        text = text.replace(part, "")
    return text.format(
        colour=scene.colour, shape=scene.shape, motion=scene.motion, background=scene.background
    )


def parse_caption(text: str) -> dict[str, str | None]:
    """The labels a caption names: colour, shape, motion and background (None where it names none)."""
    words = re.findall(r"[a-z]+", text.lower())
    found: dict[str, str | None] = {"colour": None, "shape": None, "motion": None, "background": None}
    for i, word in enumerate(words):
        if word == "background" and i > 0 and words[i - 1] in BACKGROUNDS:
            found["background"] = words[i - 1]
        elif word in SHAPES:
            found["shape"] = word
            if i > 0 and words[i - 1] in COLOURS:
                found["colour"] = words[i - 1]
        elif word in DIRECTIONS and found["motion"] is None:
            found["motion"] = word
        elif word in ("grows", "growing"):
            found["motion"] = "grows"
    return found


def shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
    if shape == "square":
        return (np.abs(xs - cx) <= r) & (np.abs(ys - cy) <= r)
    # triangle pointing up: apex (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r)
    inside_y = (ys >= cy - r) & (ys <= cy + r)
    half_width = (ys - (cy - r)) / 2
    return inside_y & (np.abs(xs - cx) <= half_width)


def coverage(scene: Scene, frame: int, frames: int, height: int, width: int) -> np.ndarray:
    """float32 [H, W] in [0, 1]: the object's anti-aliased coverage of each pixel at `frame`."""
    t = frame / max(frames - 1, 1)
    (x0, y0), (x1, y1) = scene.start, scene.end()
    side = min(height, width)
    cx, cy = (x0 + t * (x1 - x0)) * width, (y0 + t * (y1 - y0)) * height
    r = scene.radius * side * (1 + t * (scene.growth - 1) if scene.motion == "grows" else 1)
    s = SUPERSAMPLE
    ys, xs = np.mgrid[0 : height * s, 0 : width * s].astype(np.float32)
    xs, ys = (xs + 0.5) / s, (ys + 0.5) / s
    if scene.wrap:  # on the ring: the centre inside the frame, and copies one frame before and after it
        ax, ay = (abs(d) for d in DIRECTIONS[scene.motion])
        cx, cy = cx % width if ax else cx, cy % height if ay else cy
        copies = [(cx + k * ax * width, cy + k * ay * height) for k in (-1, 0, 1)]
    else:
        copies = [(cx, cy)]
    mask = np.zeros(xs.shape, bool)
    for x, y in copies:
        mask |= shape_mask(scene.shape, xs, ys, x, y, r)
    mask = mask.astype(np.float32)
    return mask.reshape(height, s, width, s).mean(axis=(1, 3))


# how far `tinted_colours` may move a colour: a share of the distance to the nearest other colour of its palette,
# and at most these many RGB levels, so that every tinted colour is still nearest to its own name
TINT_SHARE = 0.3
TINT_MAX = {"object": 30.0, "background": 20.0}


def _tint(name: str, palette: dict[str, tuple[int, int, int]], most: float, rng: random.Random) -> np.ndarray:
    rgb = np.array(palette[name], np.float64)
    nearest_other = min(
        np.linalg.norm(rgb - np.array(v, np.float64)) for k, v in palette.items() if k != name
    )
    direction = np.array([rng.gauss(0.0, 1.0) for _ in range(3)])
    direction /= np.linalg.norm(direction)
    reach = min(most, TINT_SHARE * nearest_other) * rng.random() ** (1 / 3)  # uniform in the ball
    return np.clip(rgb + direction * reach, 0, 255)


def tinted_colours(scene: Scene, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """(object rgb, background rgb) float [3] each: the scene's named colours moved by a random offset drawn
    uniformly from a ball (`TINT_SHARE`, `TINT_MAX`), object first, so that training clips show each colour word
    as a small range of colours around its palette entry."""
    fg = _tint(scene.colour, COLOURS, TINT_MAX["object"], rng)
    return fg, _tint(scene.background, BACKGROUNDS, TINT_MAX["background"], rng)


def render(
    scene: Scene,
    frames: int,
    height: int,
    width: int,
    colours: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """uint8 [F, H, W, 3]: the clip of `scene`, in `colours` (object rgb, background rgb) where given, else in
    the palette colours of its names."""
    if frames < 1 or height < 8 or width < 8:
        raise ValueError(f"clip size frames={frames}, height={height}, width={width}: need >= 1, 8, 8")
    if colours is None:
        colours = (COLOURS[scene.colour], BACKGROUNDS[scene.background])
    fg, bg = (np.asarray(c, np.float32) for c in colours)
    video = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        a = coverage(scene, i, frames, height, width)[..., None]
        video[i] = np.round(a * fg + (1 - a) * bg).astype(np.uint8)
    return video
