"""Media listing, probing, fps resampling, bucket resize/crop; corrupt media are skipped and counted."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from motif_video.synthetic.squares import write_moving_squares
from motif_video.training.data import (
    MediaDataset,
    MediaInfo,
    assign_bucket,
    check_buckets,
    collate,
    list_media,
    resize_crop,
    source_frame_indices,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    write_moving_squares(folder, 2, frames=17, height=48, width=80, fps=24)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(folder / "still.png")
    (folder / "still.txt").write_text("a red square")
    (folder / "garbage.mp4").write_bytes(b"not a video" * 50)  # unreadable
    (folder / "empty.mp4").write_bytes(b"")  # unreadable
    good = (folder / "clip-0000.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])  # header ok or not: must never crash
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return folder


def test_corrupt_media_are_skipped_and_counted(media):
    dataset = MediaDataset(list_media(media), check_buckets([[9, 48, 80], [1, 32, 32]]), fps=24)
    assert (
        dataset.skipped.counts["unreadable"] >= 3
    )  # garbage, empty, broken png (+ truncated if caught here)
    samples = [dataset[i] for i in range(len(dataset))]  # decoding the rest never raises
    good = [s for s in samples if s is not None]
    assert len(good) >= 3 and len(good) + dataset.skipped.total == 7
    assert "skipped" in str(dataset.skipped) and "garbage.mp4" in str(dataset.skipped)


def test_manifest_with_missing_file_and_images_as_one_frame(media, tmp_path):
    rows = [{"path": str(media / "clip-0001.mp4"), "caption": "one"}, {"video": "nowhere.mp4", "caption": "lost"},
            {"image": str(media / "still.png"), "caption": "img", "score": 3}]  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = MediaDataset(list_media(manifest), check_buckets([[9, 48, 80], [1, 32, 32]]), fps=24)
    assert dataset.skipped.counts == {"missing": 1}
    assert dataset.buckets == [(9, 48, 80), (1, 32, 32)]
    assert dataset.items[1].extra == {"score": 3}
    batch = collate([dataset[1]])
    assert batch["pixels"].shape == (1, 3, 1, 32, 32) and batch["caption"] == ["img"]
    (tmp_path / "m.csv").write_text(f"path,caption\n{media / 'clip-0000.mp4'},hello\n")
    assert list_media(tmp_path / "m.csv")[0].caption == "hello"


def test_fps_resampling_picks_frames_by_time():
    info = MediaInfo(frames=61, fps=30.0, height=10, width=10)
    assert source_frame_indices(info, 5, 15.0, offset=0.0) == [0, 2, 4, 6, 8]
    assert source_frame_indices(info, 5, 15.0, offset=1.0) == [52, 54, 56, 58, 60]
    assert source_frame_indices(MediaInfo(1, 0.0, 5, 5), 3, 24.0) == [0, 0, 0]


def test_buckets_longest_then_nearest_aspect():
    buckets = check_buckets([[33, 480, 832], [33, 832, 480], [17, 480, 832], [1, 480, 480]])
    assert assign_bucket(MediaInfo(100, 24.0, 720, 1280), buckets, 24.0) == (33, 480, 832)
    assert assign_bucket(MediaInfo(100, 24.0, 1280, 720), buckets, 24.0) == (33, 832, 480)
    assert assign_bucket(MediaInfo(20, 24.0, 720, 1280), buckets, 24.0) == (17, 480, 832)
    assert assign_bucket(MediaInfo(10, 24.0, 720, 1280), buckets, 24.0) is None
    assert assign_bucket(MediaInfo(1, 0.0, 300, 400), buckets, 24.0) == (1, 480, 480)
    with pytest.raises(ValueError, match="4k\\+1"):
        check_buckets([[8, 64, 64]])
    with pytest.raises(ValueError, match="multiples of 16"):
        check_buckets([[9, 60, 64]])


def test_resize_crop_covers_then_centre_crops():
    frames = torch.zeros(2, 40, 100, 3, dtype=torch.uint8)
    frames[:, :, 45:55] = 255  # a bright vertical bar in the middle
    out = resize_crop(frames, 32, 32)
    assert out.shape == (3, 2, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert out[:, :, :, 16].mean() > 0.9 and out[:, :, :, 0].mean() < -0.9


def test_a_missing_caption_is_never_an_empty_one(tmp_path):
    """A folder's clip without its .txt is skipped and counted; a manifest row without the caption field is an
    error naming the line and the field; an empty caption given as such is kept."""
    folder = tmp_path / "clips"
    write_moving_squares(folder, 2, frames=9, height=32, width=32, fps=24)
    (folder / "clip-0001.txt").unlink()
    dataset = MediaDataset(list_media(folder), check_buckets([[9, 32, 32]]), fps=24)
    assert [item.path.name for item in dataset.items] == ["clip-0000.mp4"]
    assert dataset.skipped.counts == {"without a caption (.txt)": 1}
    assert "clip-0001.mp4" in str(dataset.skipped)

    manifest = tmp_path / "m.jsonl"
    rows = [{"path": "clips/clip-0000.mp4", "text": "a square", "caption": "x"},
            {"path": "clips/clip-0001.mp4", "text": ""}]  # fmt: skip
    manifest.write_text("\n\n".join(json.dumps(r) for r in rows))  # a blank line 2
    with pytest.raises(ValueError, match=r"m.jsonl line 3 has no caption under 'caption' \(its keys: \['path', "
                       r"'text'\]\): name the caption's key with data.caption_field"):  # fmt: skip
        list_media(manifest)
    assert [item.caption for item in list_media(manifest, "text")] == ["a square", ""]
    (tmp_path / "m.csv").write_text("path,text\nclips/clip-0000.mp4,hello\n")
    with pytest.raises(ValueError, match="m.csv line 2 has no caption under 'caption'"):
        list_media(tmp_path / "m.csv")


def test_a_bad_manifest_line_is_an_error_naming_the_file_and_the_line(tmp_path):
    """A line that is not JSON, a row that is not an object, a CSV record with too many fields: "FILE line N: ...";
    a byte-order mark (Excel's UTF-8 CSV) is not part of the first column's name."""
    good = json.dumps({"path": "a.mp4", "caption": "a"})
    for name, text, message in [
        ("bad.jsonl", f"{good}\n\n{{oops\n", r"bad.jsonl line 3: not JSON \(Expecting property name"),
        (
            "list.jsonl",
            f'{good}\n["b.mp4", "b"]\n',
            r"list.jsonl line 2: a row must be a JSON object.*got list",
        ),
        ("number.jsonl", '{"path": 5, "caption": "c"}\n', r"number.jsonl line 1: 'path' must be a path"),
        (
            "wide.csv",
            "path,caption\na.mp4,a\nb.mp4,b, c\n",
            r"wide.csv line 3: 3 fields, and the header names 2",
        ),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            list_media(tmp_path / name)

    (tmp_path / "excel.csv").write_bytes("path,caption\r\na.mp4,un café\r\n".encode("utf-8-sig"))
    (tmp_path / "bom.jsonl").write_bytes((good + "\n").encode("utf-8-sig"))
    for name, caption in (("excel.csv", "un café"), ("bom.jsonl", "a")):
        [item] = list_media(tmp_path / name)
        assert (item.path, item.caption) == (tmp_path / "a.mp4", caption)


def test_a_file_undecodable_every_epoch_is_counted_once(tmp_path, monkeypatch):
    from motif_video.training import data

    folder = tmp_path / "clips"
    write_moving_squares(folder, 2, frames=9, height=32, width=32, fps=24)
    dataset = MediaDataset(list_media(folder), check_buckets([[9, 32, 32]]), fps=24)
    assert str(dataset.skipped) == "no files skipped"
    monkeypatch.setattr(
        data, "decode_frames", lambda path, indices: (_ for _ in ()).throw(OSError("cut short"))
    )
    first, second = (str(item.path) for item in dataset.items)
    broken = [{"skipped": ("undecodable", path)} for path in (first, first, second)]
    assert [dataset[0], dataset[0], dataset[1]] == broken  # two epochs of file 0
    assert dataset.skipped.counts == {"undecodable": 2}
    assert str(dataset.skipped) == f"skipped 2 file(s): 2 undecodable (e.g. {first}, {second})"
