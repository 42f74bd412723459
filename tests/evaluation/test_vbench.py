import pytest

from motif_video.evaluation import vbench as vb


def test_vbench_file_names():
    assert vb.video_name("In a still frame, a stop sign", 0) == "In a still frame, a stop sign-0.mp4"
    assert vb.video_name("a bird and a cat", 4) == "a bird and a cat-4.mp4"
    with pytest.raises(ValueError, match="0..4"):
        vb.video_name("a dog", 5)
    with pytest.raises(ValueError, match="'/'"):
        vb.video_name("AC/DC on stage", 0)


def test_suite_items_and_rank_split():
    entries, source = vb.load_full_info()
    assert source and len(entries) >= 11
    items = vb.suite_items(entries, ["human_action"], samples=5)
    assert items[0].filename == "A person is riding a bike-0.mp4" or items[0].filename.endswith("-0.mp4")
    everything = vb.suite_items(entries[:3], None, samples=2)
    assert [i.filename for i in everything] == [
        "In a still frame, a stop sign-0.mp4",
        "In a still frame, a stop sign-1.mp4",
        "a bird and a cat-0.mp4",
        "a bird and a cat-1.mp4",
        "A person is riding a bike-0.mp4",
        "A person is riding a bike-1.mp4",
    ]
    shares = [vb.for_rank(everything, r, 4) for r in range(4)]
    assert sorted(i.filename for s in shares for i in s) == sorted(i.filename for i in everything)
    assert shares[1] == [everything[1], everything[5]]
    with pytest.raises(ValueError, match="dimension"):
        vb.suite_items(entries, ["smell"])


def test_missing_weights_are_named(tmp_path):
    missing = vb.missing_weights(["imaging_quality", "temporal_flickering"], tmp_path)
    assert missing == [tmp_path / "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth"]
    (tmp_path / "pyiqa_model").mkdir()
    (tmp_path / "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth").write_bytes(b"x")
    assert vb.missing_weights(["imaging_quality"], tmp_path) == []
    with pytest.raises(ValueError, match="vbench|musiq"):
        vb.check_scorer(["imaging_quality"], tmp_path / "empty")
