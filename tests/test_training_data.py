"""CIFAR-10 and ImageNet loaders on fixtures in the real on-disk formats: split, locating, download, bad data."""

from __future__ import annotations

import http.server
import io
import pickle
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_data import (
    make_cifar_batches,
    md5_of,
    write_cifar_archive,
    write_cifar_extracted,
    write_imagenet_folders,
)
from worker.training import data_cifar
from worker.training.data_cifar import decode_batch, load_cifar10, locate_cifar10
from worker.training.data_imagenet import ImageNetData, decode_image
from worker.training.errors import DataError, DatasetUnavailable

pytestmark = pytest.mark.jax


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_archive(tmp_path_factory.mktemp("cifar"), per_batch=40, test_size=30)


def test_archive_round_trips_the_pickle_layout(archive: Path) -> None:
    batches = make_cifar_batches(per_batch=40, test_size=30)
    splits = load_cifar10(archive, "final")
    expected = batches["data_batch_1"]
    first = splits.train.images[0]
    # b'data' rows are R plane, G plane, B plane of 32x32 each.
    raw = np.asarray(expected[b"data"])[0]
    assert first[0, 0].tolist() == [raw[0], raw[1024], raw[2048]]
    assert first[0, 1].tolist() == [raw[1], raw[1025], raw[2049]]
    assert first[1, 0].tolist() == [raw[32], raw[1024 + 32], raw[2048 + 32]]
    assert splits.train.labels[:40].tolist() == expected[b"labels"]
    assert splits.train.images.shape == (200, 32, 32, 3) and splits.train.images.dtype == np.uint8
    assert splits.test is not None and len(splits.test) == 30 and splits.validation is None


def test_search_split_holds_out_the_last_tenth_and_never_reads_the_test_batch(
    archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = load_cifar10(archive, "final").train
    requested: list[tuple[str, ...]] = []
    real = data_cifar._read_members

    def spy(source: Path, names: tuple[str, ...]) -> dict[str, bytes]:
        requested.append(names)
        found = real(source, names)
        assert "test_batch" not in found
        return found

    monkeypatch.setattr(data_cifar, "_read_members", spy)
    monkeypatch.setattr(data_cifar, "_loaded", {})
    splits = load_cifar10(archive, "search")
    assert requested and all("test_batch" not in names for names in requested)
    assert splits.test is None and splits.validation is not None
    assert len(splits.train) == 180 and len(splits.validation) == 20
    # Fixed: validation is exactly the last 10 % (for the real archive the last 5,000 of 50,000).
    np.testing.assert_array_equal(splits.validation.images, full.images[180:])
    np.testing.assert_array_equal(splits.train.labels, full.labels[:180])


def test_search_mode_works_without_a_test_batch_on_disk(tmp_path: Path) -> None:
    folder = write_cifar_extracted(tmp_path, per_batch=20, test_size=10)
    (folder / "test_batch").unlink()
    splits = load_cifar10(folder, "search")
    assert len(splits.train) + len(splits.validation or ()) == 100
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(folder, "final")


def test_locate_prefers_data_dir_then_cache(tmp_path: Path, archive: Path) -> None:
    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    extracted = write_cifar_extracted(data_dir, per_batch=10, test_size=10)
    cached = write_cifar_archive(cache, per_batch=10, test_size=10)
    assert locate_cifar10(data_dir, cache_dir=cache, download=False) == extracted
    assert locate_cifar10(extracted, cache_dir=cache, download=False) == extracted
    assert locate_cifar10(tmp_path / "elsewhere", cache_dir=cache, download=False) == cached
    assert locate_cifar10(None, cache_dir=cache, download=False) == cached


def test_missing_and_download_disabled_says_where_to_put_the_archive(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match=r"put cifar-10-python\.tar\.gz .* into .*data.*--data-dir.*cache"):
        locate_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", download=False)


@pytest.fixture
def served(archive: Path) -> Iterator[str]:
    """The fixture archive on a local HTTP server (no internet in tests)."""
    payload = archive.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    server.shutdown()
    server.server_close()


def test_download_checks_md5_and_renames_atomically(tmp_path: Path, served: str, archive: Path) -> None:
    cache = tmp_path / "cache"
    path = locate_cifar10(None, cache_dir=cache, url=served, md5=md5_of(archive), progress=True)
    assert path == cache / "cifar-10-python.tar.gz" and path.read_bytes() == archive.read_bytes()
    assert [p.name for p in cache.iterdir()] == ["cifar-10-python.tar.gz"]  # no temp file left
    assert len(load_cifar10(path).train) == 180


def test_download_with_wrong_md5_keeps_nothing(tmp_path: Path, served: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="MD5"):
        locate_cifar10(None, cache_dir=cache, url=served, md5="0" * 32, progress=False)
    assert list(cache.iterdir()) == []


def test_offline_gives_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatasetUnavailable) as info:
        locate_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", url=f"http://127.0.0.1:{port}/x.tar.gz",
                       progress=False, timeout_s=5)
    message = str(info.value)
    assert "download" in message and "cifar-10-python.tar.gz" in message and str(tmp_path / "cache") in message
    assert "\n" not in message
    assert not any((tmp_path / "cache").iterdir())


def test_corrupt_archive_is_bad_data(tmp_path: Path, archive: Path) -> None:
    broken = tmp_path / "cifar-10-python.tar.gz"
    broken.write_bytes(archive.read_bytes()[: len(archive.read_bytes()) // 2])
    with pytest.raises(DataError, match="corrupt CIFAR-10 archive"):
        load_cifar10(broken)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({b"data": np.zeros((4, 3000), np.uint8)}, r"uint8 \[n, 3072\]"),
        ({b"data": np.zeros((4, 3072), np.float32)}, r"uint8 \[n, 3072\]"),
        ({b"labels": [0, 1, 2]}, "3 labels for 4 images"),
        ({b"labels": [0, 1, 2, 10]}, r"labels must be integers in \[0, 10\)"),
        ({b"labels": [0, -1, 2, 3]}, r"labels must be integers in \[0, 10\)"),
    ],
)
def test_bad_batches_are_rejected_with_the_reason(change: dict[bytes, object], message: str) -> None:
    batch: dict[bytes, object] = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    batch.update(change)
    with pytest.raises(DataError, match=message):
        decode_batch(pickle.dumps(batch, protocol=2), "data_batch_1")
    with pytest.raises(DataError, match="not a CIFAR-10 batch"):
        decode_batch(b"not a pickle", "data_batch_1")


def test_archive_without_training_batches_is_bad_data(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="lacks data_batch_1"):
        load_cifar10(path)


# --- ImageNet class folders ---


def test_imagenet_folders_decode_resize_and_batch_in_background(tmp_path: Path) -> None:
    root = write_imagenet_folders(tmp_path / "imagenet", classes=("n02", "n01", "n03"), train_per_class=3)
    data = ImageNetData(root, image_size=24, workers=2, prefetch=2)
    assert data.num_classes == 3 and data.num_train == 9 and data.num_eval == 6
    assert data.train.classes == ("n01", "n02", "n03")  # class index = sorted folder names
    assert [p.parent.name for p in data.train.paths[:3]] == ["n01"] * 3 and data.train.labels[:3].tolist() == [0] * 3
    batches = list(data.train_epoch(epoch=0, seed=1, batch_size=4))
    assert len(batches) == 2 and all(x.shape == (4, 24, 24, 3) and x.dtype == np.uint8 for x, _ in batches)
    again = list(data.train_epoch(epoch=0, seed=1, batch_size=4))
    assert all((a[1] == b[1]).all() for a, b in zip(batches, again, strict=True))
    evals = list(data.eval_batches(4))
    assert [int(m.sum()) for _, _, m in evals] == [4, 2]
    assert sorted(np.concatenate([y[m > 0] for _, y, m in evals]).tolist()) == [0, 0, 1, 1, 2, 2]
    # Pixels survive decoding: n01 (second folder written) has the palette's green (60, 180, 75).
    x, y, _ = evals[0]
    red, green, _ = x[y == 0].mean(axis=(0, 1, 2))
    assert green > 150 and red < 100


def test_imagenet_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="train/<class>"):
        ImageNetData(tmp_path / "nothing")
    root = write_imagenet_folders(tmp_path / "imagenet", classes=("a", "b"), train_per_class=2, val_per_class=1)
    (root / "val" / "zzz").mkdir()
    with pytest.raises(DataError, match="class that"):
        ImageNetData(root)
    (root / "val" / "zzz").rmdir()
    bad = root / "train" / "a" / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode"):
        decode_image(bad, 16)
    data = ImageNetData(root, image_size=16, workers=2)
    with pytest.raises(DataError, match="cannot decode"):
        for _ in data.train_epoch(0, 0, 5):
            pass
