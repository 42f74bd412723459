"""Fingerprints of the weights a video is made with (`motif_video.weights_fingerprint`): a file's SHA-256, read from
the Hugging Face cache's blob name or computed once and kept by path, size and modification time."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from motif_video import weights_fingerprint as W


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(W.CACHE_ENV, str(folder))
    return folder


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_files_sha256_is_computed_once_while_it_is_unchanged(tmp_path, cache, monkeypatch):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    assert W.cached_sha256(weights) == _sha(b"weights")
    kept = json.loads((cache / W.CACHE_NAME).read_text())["files"]
    assert kept[str(weights.resolve())]["sha256"] == _sha(b"weights")
    # written atomically: no part file left
    assert sorted(p.name for p in cache.iterdir()) == [".lock", W.CACHE_NAME]

    read = []
    real = W.file_sha256
    monkeypatch.setattr(W, "file_sha256", lambda path: read.append(path) or real(path))
    assert W.cached_sha256(weights) == _sha(b"weights") and read == []  # the kept digest: nothing read
    weights.write_bytes(b"trained further")  # another size
    assert W.cached_sha256(weights) == _sha(b"trained further") and len(read) == 1
    os.utime(weights, ns=(1, 1))  # the same size, another modification time
    assert W.cached_sha256(weights) == _sha(b"trained further") and len(read) == 2

    (cache / W.CACHE_NAME).write_text("{not json")  # a damaged cache is computed again, and rewritten
    assert W.cached_sha256(weights) == _sha(b"trained further") and len(read) == 3
    assert W.cached_sha256(weights) == _sha(b"trained further") and len(read) == 3


def test_a_hub_cache_file_is_named_by_its_blob_and_not_read(tmp_path, cache):
    """The Hub names a large file's blob by its SHA-256 and links the snapshot's file to it."""
    name = "ab" * 32
    repo = tmp_path / "models--org--model"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / name).write_bytes(b"not hashed: the name is taken")
    snapshot = repo / "snapshots" / ("c" * 40) / "transformer"
    snapshot.mkdir(parents=True)
    (snapshot / "diffusion_pytorch_model.safetensors").symlink_to(f"../../../blobs/{name}")
    assert W.cached_sha256(snapshot / "diffusion_pytorch_model.safetensors") == name
    assert not cache.exists()  # nothing computed, nothing kept


def test_a_loaded_models_components_and_their_fingerprints(tmp_path, cache):
    """The transformer's files and each LoRA loaded into it, by component; a deleted adapter leaves the record."""
    from motif_video.models import MotifVideoTransformer
    from motif_video.pipelines.lora import MotifVideoLoraLoaderMixin, save_lora
    from motif_video.testing import tiny_transformer
    from motif_video.training.lora import add_lora

    tiny_transformer(0).save_pretrained(tmp_path / "transformer")
    trained = tiny_transformer(0)
    add_lora(trained, rank=2)
    lora = save_lora(trained, tmp_path / "lora")
    model = MotifVideoTransformer.from_pretrained(tmp_path / "transformer")
    file = tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"
    assert W.weights_fingerprint(model) == {"transformer": _sha(file.read_bytes())}

    class Pipe(MotifVideoLoraLoaderMixin):
        transformer = model

    Pipe().load_lora_weights(lora, adapter_name="style")
    assert W.weights_fingerprint(model) == {
        "transformer": _sha(file.read_bytes()),
        "lora:style": _sha(lora.read_bytes()),
    }
    model.delete_adapters("style")
    assert set(W.weights_fingerprint(model)) == {"transformer"}
    # the folder trained further while the model is held: what was loaded is not what the file now holds
    tiny_transformer(1).save_pretrained(tmp_path / "transformer")
    assert W.weights_fingerprint(model) == {"transformer": W.CHANGED_SINCE_LOADED}
    again = MotifVideoTransformer.from_pretrained(tmp_path / "transformer")
    assert W.weights_fingerprint(again) == {"transformer": _sha(file.read_bytes())}


def test_a_file_rewritten_with_its_modification_time_kept_is_hashed_again(tmp_path, cache):
    """`cp -p` or `touch -r` keeps a new file's size and modification time; its change time and inode still tell."""
    import os

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")
    assert W.cached_sha256(path) == _sha(b"old")
    stat = path.stat()
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"new")
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert W.cached_sha256(path) == _sha(b"new")


def test_several_files_are_fingerprinted_by_their_names_and_digests(tmp_path, cache):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    expected = _sha(f"a.safetensors {_sha(b'a')}\nb.safetensors {_sha(b'b')}\n".encode())
    assert W.files_sha256([b, a]) == W.files_sha256([a, b]) == expected


def test_a_replay_of_weights_rewritten_after_loading_says_they_are_not_known():
    from motif_video.replay import changed_weights

    record = {"weights_fingerprint": {"transformer": W.CHANGED_SINCE_LOADED}, "model": "m"}
    lines = changed_weights(record, {"model": "m"}, {"transformer": "a" * 64})
    assert lines == [
        "the transformer's file was rewritten after it was loaded to make the video: the weights then are not "
        "known, and may differ from those loaded now"
    ]


def _hash_files(paths, barrier):
    barrier.wait(60)  # both start hashing at once
    for path in paths:
        W.cached_sha256(path)


def test_processes_hashing_at_once_keep_every_digest(tmp_path, cache):
    """Two processes keeping digests at the same time both keep theirs (before: each wrote the copy it had read, so
    the last writer dropped the other's entries)."""
    import json
    import multiprocessing

    files = [tmp_path / f"{i}.bin" for i in range(200)]
    for i, path in enumerate(files):
        path.write_bytes(str(i).encode())
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_hash_files, args=(files[k::2], barrier)) for k in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    kept = json.loads((W.cache_folder() / W.CACHE_NAME).read_text())["files"]
    assert sorted(kept) == sorted(str(path.resolve()) for path in files)
