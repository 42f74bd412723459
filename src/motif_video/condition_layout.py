"""Where conditions land in the latent video: pixel frames -> latent frames of the causal Wan VAE, and the checks.

The Wan VAE encodes a video of F = 4k + 1 frames causally in groups: pixel frame 0 alone is latent frame 0, then
each group of 4 pixel frames is one latent frame (`AutoencoderKLWan._encode` runs frame 0, then frames 1-4, 5-8,
...). So

    latent_index(f) = 0                   for f = 0
                    = 1 + (f - 1) // 4    for f > 0
    pixel_frames(0) = [0];  pixel_frames(k) = [4k - 3, 4k]   for k > 0

A condition (an image: one frame; a clip: n frames) placed at pixel frame `frame` conditions every latent frame
whose group it touches. Its latents are encoded from a pixel sequence built on the video's grouping, so each
conditioned latent frame is the VAE latent of exactly that latent frame's group of pixel frames:

- the pixels of a touched group that the condition does not cover take the condition's nearest frame (an image
  at frame f > 0 fills its whole group of 4: a still keyframe; a clip that straddles a group boundary is padded
  with its first / last frame at the partial groups);
- a condition starting at latent frame 0 is encoded as it is (the video's own causal start: a first image is
  exactly today's image-to-video latent, a clip prefix of 4m + 1 frames gives the video's first m + 1 latents);
- a condition starting at latent frame k > 0 is encoded after one context frame (the pixel frame just before its
  first group when the condition covers it, else its own first frame), whose latent is then dropped: the causal
  encoder sees a first frame before the group as it does in the whole video.

Two conditions touching the same latent frame conflict, frames past the video are out of range, and a strength is
in (0, 1] (the mask channel's value at the frames): `plan_layout` refuses all of these with a ValueError before
any model runs. Negative frames count from the end (-1 is the last frame).

Pure Python: the command line checks conditions with it before importing torch.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

GROUP = 4  # pixel frames per latent frame after the first (the VAE's temporal factor)
DEFAULT_OVERLAP = 9  # video extension: pixel frames a window is conditioned on (3 latent frames), at most
DEFAULT_CROSSFADE = 0  # video extension: generated frames a window fades in over the video's last ones


def latent_index(frame: int) -> int:
    """The latent frame that holds pixel frame `frame` (>= 0)."""
    if frame < 0:
        raise ValueError(f"pixel frame must be >= 0, got {frame}")
    return 0 if frame == 0 else 1 + (frame - 1) // GROUP


def pixel_frames(latent: int) -> range:
    """The pixel frames latent frame `latent` encodes: [0] for 0, [4k - 3 .. 4k] for k > 0."""
    if latent < 0:
        raise ValueError(f"latent frame must be >= 0, got {latent}")
    return range(0, 1) if latent == 0 else range(GROUP * latent - 3, GROUP * latent + 1)


def num_latent_frames(num_frames: int) -> int:
    return (num_frames - 1) // GROUP + 1


def default_overlap(window: int, crossfade: int = DEFAULT_CROSSFADE) -> int:
    """The frames an extension window of `window` frames is conditioned on when none are asked for: `DEFAULT_OVERLAP`
    (3 latent frames), or on a shorter window the largest 4m + 1 that leaves room for the cross-fade and at least
    one new frame (a 9-frame window: 5, two latent frames, so the condition still carries motion, and one new latent
    frame; a 5-frame window: 1). A ValueError when no overlap fits."""
    room = window - crossfade - 1  # overlap + crossfade < window
    if room < 1:
        if crossfade:
            raise ValueError(
                f"crossfade ({crossfade}) leaves no room for an overlap in a window of {window} frames: overlap "
                "(at least 1 frame) + crossfade must be less than the window"
            )
        raise ValueError(
            f"window ({window} frames) leaves no room for an overlap: extending needs at least 5 frames"
        )
    return min(DEFAULT_OVERLAP, 1 + (room - 1) // GROUP * GROUP)


@dataclass(frozen=True)
class Placement:
    """One condition on the video's grouping.

    `frame`: its first pixel frame (non-negative); `length`: its pixel frames; `latents`: the latent frames it
    conditions; `encode`: indices into the condition's own frames of the pixel sequence to encode (context frame
    first when `skip`); `skip`: latents to drop from the front of that encoding (1 after a context frame, else 0).
    """

    name: str
    frame: int
    length: int
    strength: float
    latents: range
    encode: tuple[int, ...]
    skip: int


def place(name: str, frame: int, length: int, num_frames: int, strength: float = 1.0) -> Placement:
    """The placement of a condition of `length` pixel frames at pixel frame `frame` in a video of `num_frames`."""
    if isinstance(frame, bool) or not isinstance(frame, numbers.Integral):  # numpy's integers too
        raise ValueError(f"{name}: frame must be an integer, got {frame!r}")
    frame = int(frame)
    if length < 1:
        raise ValueError(f"{name}: a condition needs at least one frame, got {length}")
    if not isinstance(strength, numbers.Real) or not 0.0 < strength <= 1.0:
        raise ValueError(f"{name}: strength must be in (0, 1], got {strength!r}")
    start = frame + num_frames if frame < 0 else frame
    if not 0 <= start < num_frames:
        raise ValueError(
            f"{name}: frame {frame} is outside the video's frames 0..{num_frames - 1} (-{num_frames}..-1 from the end)"
        )
    end = start + length - 1
    if end >= num_frames:
        raise ValueError(
            f"{name}: {length} frames at frame {start} end at frame {end}, past the video's last frame "
            f"{num_frames - 1}"
        )
    first, last = latent_index(start), latent_index(end)
    pixels = [p for k in range(first, last + 1) for p in pixel_frames(k)]

    def source(p: int) -> int:  # the condition's own frame that pixel p shows (nearest frame outside it)
        return min(max(p - start, 0), length - 1)

    encode = [source(p) for p in pixels]
    skip = 0
    if first > 0:
        encode.insert(0, source(pixels[0] - 1))
        skip = 1
    return Placement(name, start, length, float(strength), range(first, last + 1), tuple(encode), skip)


def plan_layout(conditions: list[tuple[str, int, int, float]], num_frames: int) -> list[Placement]:
    """Placements of (name, frame, length, strength) conditions, in order; ValueError for a condition out of range
    or two touching the same latent frame (naming both and the pixel frames that latent frame holds)."""
    if num_frames < 1 or (num_frames - 1) % GROUP:
        raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, ...), got {num_frames}")
    placed: list[Placement] = []
    owner: dict[int, Placement] = {}
    for name, frame, length, strength in conditions:
        p = place(name, frame, length, num_frames, strength)
        for k in p.latents:
            if k in owner:
                other = owner[k]
                group = pixel_frames(k)
                raise ValueError(
                    f"{other.name} (frame {other.frame}) and {name} (frame {p.frame}) both condition latent frame "
                    f"{k} (pixel frames {group[0]}-{group[-1]}); conditions must fall in different groups of "
                    f"{GROUP} frames"
                )
            owner[k] = p
        placed.append(p)
    return placed
