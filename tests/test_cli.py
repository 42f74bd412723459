import json

from motif_video.cli import main


def test_info_2b(capsys):
    assert main(["info", "motif-video-2b", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"]["total"] == 2_037_809_600
    assert summary["tokens"]["video"] == 114_080
    assert summary["latent"] == [16, 31, 92, 160]
    assert summary["tokens"]["decoder joint"] == 228_160


def test_info_rejects_bad_sizes(capsys):
    assert main(["info", "tiny", "--size", "100x64x5"]) == 2
    assert "width must be a positive multiple of 16, got 100" in capsys.readouterr().err
    assert main(["info", "tiny", "--size", "64x64x6"]) == 2
    assert "num_frames must be 4k+1" in capsys.readouterr().err
    assert main(["info", "tiny", "--size", "64by64"]) == 2
    assert "WIDTHxHEIGHTxFRAMES" in capsys.readouterr().err
