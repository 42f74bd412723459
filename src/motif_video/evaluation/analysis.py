"""Read a clip of one object over a plain background with classical image analysis (no learned models).

background  the median colour of the frame border, named by the nearest background colour
object      pixels farther than `MIN_DISTANCE` (RGB, 0-255) from that background colour
colour      the median colour of the object's core pixels, named by the nearest object colour: over the whole
            clip (`colour`) and in each frame on its own (`frame_colours`; None where the frame has no object)
shape       per frame (`frame_shapes`), the outline of each shape placed at the object's centroid with the object's
            area, and its overlap with the object (intersection over union); the frame reads as the best shape only
            when that overlap is at least `SHAPE_MIN_OVERLAP` and beats every other shape's by `SHAPE_MARGIN`, else
            as None (unclear: a rounded square is neither a circle nor, once its corners are gone, a square). The
            clip's shape is the most common frame reading, unclear frames included (so None where they are most). Using the mask's area and centroid,
            not its extremes, keeps the reading stable under blurred edges and stray pixels; the margins were set
            on ground-truth clips of every shape at several sizes, blurred and not (tests/evaluation)
motion      displacement of the object's centre between the first and last quarter of the clip (fraction of the
            frame). The centre is read on the frame as a ring in each axis (the circular mean of the object's pixel
            places: its centroid when it is away from the edges, and still where it is when it is split across an
            edge) and followed frame by frame, a step of more than half the frame counting as a wrap, so that an
            object that leaves one edge and comes back in at the other (a wrapping scene, a long extension) keeps
            its direction; "grows" when the area at least 1.5x while the centre moves less than 8 % of the
            frame, or while the object of the first quarter lies within the object of the last (an object grown
            past the frame's edges, as in a long extension, shows a lopsided part of itself: a triangle's visible
            centre drifts towards its base); "still" when nothing moves
flicker     mean absolute change of background pixels between consecutive frames (0-1)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..synthetic.scenes import BACKGROUNDS, COLOURS, SHAPES, shape_mask

MIN_DISTANCE = 60.0
# half-size r of a shape of area A: circle A = pi r^2, square A = 4 r^2, triangle (base 2r, height 2r) A = 2 r^2
SHAPE_AREA = {"circle": math.pi, "square": 4.0, "triangle": 2.0}
MIN_PIXELS = 6  # frames whose object is smaller are not read for shape or colour
# a frame reads as a shape when its outline overlaps the object this much and beats the runner-up by the margin:
# true outlines overlap >= 0.97 and beat the others by >= 0.11 at every size; a square whose corners are rounded
# with 65 % of its half-size overlaps circle 0.91 / square 0.88 and must read as neither
SHAPE_MIN_OVERLAP = 0.8
SHAPE_MARGIN = 0.05
GROW_RATIO = 1.5
GROW_MAX_SHIFT = 0.08
GROW_WITHIN = 0.9  # share of the first quarter's object inside the last quarter's, for "grows" at any shift
MIN_SHIFT = 0.05


@dataclass
class Reading:
    background: str
    colour: str | None
    shape: str | None
    motion: str
    displacement: tuple[float, float]  # (dx, dy), fractions of width / height
    area_ratio: float
    flicker: float
    frame_colours: list[str | None]  # per frame; None: no object in that frame
    frame_shapes: list[str | None]  # per frame; None: no object, or no shape clearly read

    def labels(self) -> dict[str, str | None]:
        return {
            "colour": self.colour,
            "shape": self.shape,
            "motion": self.motion,
            "background": self.background,
        }


def nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = sorted(palette)
    table = np.array([palette[n] for n in names], np.float32)
    return names[int(np.argmin(((table - rgb) ** 2).sum(-1)))]


def _border(frame: np.ndarray) -> np.ndarray:
    return np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])


def object_masks(video: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks bool [F, H, W], distance float [F, H, W], background rgb [3]) of a uint8 clip [F, H, W, 3]."""
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be [frames, height, width, 3], got shape {tuple(video.shape)}")
    v = video.astype(np.float32)
    bg = np.median(np.concatenate([_border(f) for f in v]), axis=0)
    dist = np.sqrt(((v - bg) ** 2).sum(-1))
    return dist > MIN_DISTANCE, dist, bg


def shape_overlaps(mask: np.ndarray) -> dict[str, float] | None:
    """Per shape, the intersection over union of a bool mask [H, W] with that shape's outline placed at the mask's
    centroid with the mask's area; None when the mask has fewer than `MIN_PIXELS` pixels."""
    ys, xs = np.nonzero(mask)
    if len(xs) < MIN_PIXELS:
        return None
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    gy, gx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float32) + 0.5

    def overlap(shape: str) -> float:
        r = math.sqrt(len(xs) / SHAPE_AREA[shape])
        # a triangle's centroid is r / 3 below its centre
        centre_y = cy - r / 3 if shape == "triangle" else cy
        template = shape_mask(shape, gx, gy, cx, centre_y, r)
        return float((template & mask).sum() / (template | mask).sum())

    return {shape: overlap(shape) for shape in SHAPES}


def read_shape(mask: np.ndarray) -> str | None:
    """The shape a bool mask [H, W] clearly shows, or None (too small, or no outline fits clearly better than the
    others: `SHAPE_MIN_OVERLAP`, `SHAPE_MARGIN`)."""
    overlaps = shape_overlaps(mask)
    if overlaps is None:
        return None
    best, second = sorted(SHAPES, key=overlaps.__getitem__, reverse=True)[:2]
    clear = overlaps[best] >= SHAPE_MIN_OVERLAP and overlaps[best] - overlaps[second] >= SHAPE_MARGIN
    return best if clear else None


def frame_colours(video: np.ndarray, masks: np.ndarray, dist: np.ndarray) -> list[str | None]:
    """Per frame, the object colour nearest the median of the frame's core pixels (those at least half as far from
    the background as the frame's farthest); None where the frame has fewer than `MIN_PIXELS` object pixels."""
    colours: list[str | None] = []
    for frame, mask, d in zip(video, masks, dist):
        if mask.sum() < MIN_PIXELS:
            colours.append(None)
            continue
        core = d > max(0.5 * float(d.max()), MIN_DISTANCE)
        colours.append(nearest(np.median(frame[core].astype(np.float32), axis=0), COLOURS))
    return colours


def _ring_mean(places: np.ndarray, size: int) -> float:
    """The circular mean of pixel places (0 .. size - 1) on a ring of `size` pixels, as a place in [-0.5, size - 0.5);
    the arithmetic mean when the places spread evenly round the whole ring."""
    angles = 2 * math.pi * (places + 0.5) / size
    s, c = float(np.sin(angles).mean()), float(np.cos(angles).mean())
    if math.hypot(s, c) < 1e-6:
        return float(places.mean())
    return (math.atan2(s, c) % (2 * math.pi)) * size / (2 * math.pi) - 0.5


def _track(masks: np.ndarray) -> list[tuple[float, float] | None]:
    """Per frame, the object's centre (x, y) in pixels read on the ring (`_ring_mean`) and unwrapped: a step of more
    than half the frame from the last frame with an object is taken as a wrap the other way. None: no object."""
    _, h, w = masks.shape
    track: list[tuple[float, float] | None] = []
    previous: tuple[float, float] | None = None
    offset = [0.0, 0.0]
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            track.append(None)
            continue
        place = (_ring_mean(xs, w), _ring_mean(ys, h))
        if previous is not None:
            for axis, size in ((0, w), (1, h)):
                step = place[axis] - previous[axis]
                offset[axis] -= size * round(step / size)
        previous = place
        track.append((place[0] + offset[0], place[1] + offset[1]))
    return track


def _motion(masks: np.ndarray) -> tuple[str, tuple[float, float], float]:
    f, h, w = masks.shape
    q = max(1, f // 4)
    track = _track(masks)
    first = [c for c in track[:q] if c is not None]
    last = [c for c in track[-q:] if c is not None]
    if not first or not last:
        return "still", (0.0, 0.0), 1.0
    dx = (np.mean([c[0] for c in last]) - np.mean([c[0] for c in first])) / w
    dy = (np.mean([c[1] for c in last]) - np.mean([c[1] for c in first])) / h
    area_ratio = float(masks[-q:].sum() / max(masks[:q].sum(), 1))
    shift = math.hypot(dx, dy)
    if area_ratio >= GROW_RATIO and (shift < GROW_MAX_SHIFT or _within(masks[:q], masks[-q:]) >= GROW_WITHIN):
        motion = "grows"
    elif shift < MIN_SHIFT:
        motion = "still"
    elif abs(dx) >= abs(dy):
        motion = "right" if dx > 0 else "left"
    else:
        motion = "down" if dy > 0 else "up"
    return motion, (float(dx), float(dy)), area_ratio


# the least move along the caption's direction, as a share of the frame, one window must show
WINDOW_SHIFT = 0.05
# an object leaving: its area falls below this share of the window's first quarter's, at the edge it moves toward
EXIT_AREA = 0.6
UNITS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def window_motions(video: np.ndarray, windows: list[tuple[int, int]], motion: str) -> list[bool]:
    """Per stretch [a, b) of a uint8 video [F, H, W, 3] (an extension's windows), whether the stretch alone moves the
    object the caption's way (`motion`: left, right, up or down), so that windows which hold the object still count
    against an extension that moved only at first: its centre moves `WINDOW_SHIFT` of the frame that way (more than
    across it), or it is leaving the frame there (its area falls below `EXIT_AREA` of the stretch's start while it
    touches that edge, or it is gone after being in that half of the frame). A stretch without the object is right
    only after one that saw it leave. Growing scenes are read over the whole video only (`read_clip`): an object
    grown past the frame has no edge left to read a window's growth from."""
    if motion not in UNITS:
        raise ValueError(f"motion must be one of {sorted(UNITS)}, got {motion!r}")
    masks, _, _ = object_masks(video)
    _, h, w = masks.shape
    ux, uy = UNITS[motion]
    verdicts, gone = [], False
    for a, b in windows:
        m = masks[a:b]
        q = max(1, len(m) // 4)
        track = _track(m)
        first = [c for c in track[:q] if c is not None]
        last = [c for c in track[-q:] if c is not None]
        if not first:
            verdicts.append(gone)
            continue
        edges = {"left": m[-q:, :, :2], "right": m[-q:, :, -2:], "up": m[-q:, :2, :], "down": m[-q:, -2:, :]}
        cx, cy = np.mean([c[0] for c in first]) / w - 0.5, np.mean([c[1] for c in first]) / h - 0.5
        if not last:  # gone by the stretch's end: right where it left through the edge it moves toward
            gone = bool(cx * ux + cy * uy > 0)
            verdicts.append(gone)
            continue
        gone = False
        if m[-q:].sum() < EXIT_AREA * m[:q].sum() and edges[motion].any():
            verdicts.append(True)
            continue
        dx = (np.mean([c[0] for c in last]) - np.mean([c[0] for c in first])) / w
        dy = (np.mean([c[1] for c in last]) - np.mean([c[1] for c in first])) / h
        along, across = dx * ux + dy * uy, abs(dx * uy) + abs(dy * ux)
        verdicts.append(bool(along >= WINDOW_SHIFT and along >= across))
    return verdicts


def _within(first: np.ndarray, last: np.ndarray) -> float:
    """The share of the pixels that are object in most frames of `first` that are object in most of `last`."""
    before, after = first.mean(0) > 0.5, last.mean(0) > 0.5
    return float((before & after).sum() / max(before.sum(), 1))


def flicker(video: np.ndarray, masks: np.ndarray) -> float:
    """Mean |frame t+1 - frame t| / 255 over pixels that are background in both frames (0 for one frame)."""
    if len(video) < 2:
        return 0.0
    v = video.astype(np.float32)
    still = ~(masks[1:] | masks[:-1])
    diff = np.abs(v[1:] - v[:-1]).mean(-1)
    return float(diff[still].mean() / 255) if still.any() else 0.0


def read_clip(video: np.ndarray) -> Reading:
    """What a uint8 clip [F, H, W, 3] shows, as labels of `motif_video.synthetic`."""
    masks, dist, bg = object_masks(video)
    background = nearest(bg, BACKGROUNDS)
    core = dist > np.maximum(0.5 * dist.max(axis=(1, 2), keepdims=True), MIN_DISTANCE)
    pixels = video[core]
    colour = nearest(np.median(pixels.astype(np.float32), axis=0), COLOURS) if len(pixels) else None
    shapes = [read_shape(m) for m in masks]
    shape = Counter(shapes).most_common(1)[0][0]  # unclear frames vote too: None wins where most are unclear
    motion, displacement, area_ratio = _motion(masks)
    return Reading(
        background,
        colour,
        shape,
        motion,
        displacement,
        area_ratio,
        flicker(video, masks),
        frame_colours(video, masks, dist),
        shapes,
    )


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs equal shapes, got {a.shape} and {b.shape}")
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))
