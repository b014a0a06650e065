"""Data layer: IDX parsing and its faults, locating/downloading, splitting.

Everything runs on small synthetic IDX files written to tmp_path; one test
reads the real MNIST files under $MNISTLITE_DATA (`make test` sets it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistlite.data import DATASETS, load_dataset, loading, read_idx, read_images, read_labels, resolve_data_root
from mnistlite.data import download as dl
from mnistlite.data.sources import DatasetSpec, FileSpec
from mnistlite.errors import MnistliteError

REPO = Path(__file__).resolve().parents[1]


# --- helpers ----------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def images(n: int, seed: int = 0, side: tuple[int, int] = (28, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *side), dtype=np.uint8)


def labels(n: int) -> np.ndarray:
    return (np.arange(n) % 10).astype(np.uint8)


FAKE = DatasetSpec(
    name="fake",
    folder="FAKE/raw",
    train_images=FileSpec("train-images-idx3-ubyte", None, None),
    train_labels=FileSpec("train-labels-idx1-ubyte", None, None),
    test_images=FileSpec("t10k-images-idx3-ubyte", None, None),
    test_labels=FileSpec("t10k-labels-idx1-ubyte", None, None),
    mirrors=("http://mirror.invalid/a/", "http://mirror.invalid/b/"),
    mean=0.5,
    std=0.25,
    classes=tuple("abcdefghij"),
)


def fake_root(root: Path, n_train: int = 50, n_test: int = 20, n_train_labels: int | None = None) -> Path:
    folder = root / FAKE.folder
    write(folder / "train-images-idx3-ubyte.gz", idx_bytes(images(n_train)), gz=True)
    write(folder / "train-labels-idx1-ubyte", idx_bytes(labels(n_train if n_train_labels is None else n_train_labels)))
    write(folder / "t10k-images-idx3-ubyte", idx_bytes(images(n_test, seed=1)))
    write(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels(n_test)), gz=True)
    return root


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setitem(DATASETS, "fake", FAKE)
    monkeypatch.delenv("MNISTLITE_DATA", raising=False)
    loading.clear_cache()
    return fake_root(tmp_path / "data")


def assert_fault(exc: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert path.name in msg
    for word in words:
        assert word in msg, msg


# --- reading: good files -------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_reads_plain_and_gz(tmp_path, gz):
    x, y = images(7), labels(7)
    suffix = ".gz" if gz else ""
    xp = write(tmp_path / f"img{suffix}", idx_bytes(x), gz=gz)
    yp = write(tmp_path / f"lab{suffix}", idx_bytes(y), gz=gz)
    got = read_images(xp, hashlib.sha256(idx_bytes(x)).hexdigest())
    assert got.dtype == np.uint8 and got.shape == (7, 28, 28)
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(read_labels(yp), y)
    np.testing.assert_array_equal(read_idx(xp), x)


def test_gzip_without_gz_suffix_is_sniffed(tmp_path):
    p = write(tmp_path / "labels", idx_bytes(labels(5)), gz=True)
    np.testing.assert_array_equal(read_labels(p), labels(5))


# --- reading: every fault is one MnistliteError line naming the file -----------


def test_missing_file(tmp_path):
    p = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(MnistliteError) as e:
        read_images(p)
    assert_fault(e, p, "not found")


@pytest.mark.parametrize("gz", [False, True])
def test_empty_file(tmp_path, gz):
    p = write(tmp_path / ("empty.gz" if gz else "empty"), b"", gz=gz)
    with pytest.raises(MnistliteError) as e:
        read_idx(p)
    assert_fault(e, p, "empty")


def test_truncated_header(tmp_path):
    p = write(tmp_path / "short", idx_bytes(images(2))[:10])
    with pytest.raises(MnistliteError) as e:
        read_images(p)
    assert_fault(e, p, "truncated header")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    p = write(tmp_path / ("cut.gz" if gz else "cut"), idx_bytes(images(3))[:-100], gz=gz)
    with pytest.raises(MnistliteError) as e:
        read_images(p)
    assert_fault(e, p, "truncated")


def test_trailing_garbage(tmp_path):
    p = write(tmp_path / "long", idx_bytes(labels(4)) + b"junk")
    with pytest.raises(MnistliteError) as e:
        read_labels(p)
    assert_fault(e, p, "trailing garbage")


def test_wrong_magic_labels_given_as_images(tmp_path):
    p = write(tmp_path / "labels-as-images", idx_bytes(labels(4)))
    with pytest.raises(MnistliteError) as e:
        read_images(p)
    assert_fault(e, p, "wrong magic", "2049", "expected 2051")


def test_wrong_magic_garbage(tmp_path):
    p = write(tmp_path / "garbage", b"\xde\xad\xbe\xef" + bytes(20))
    with pytest.raises(MnistliteError) as e:
        read_labels(p)
    assert_fault(e, p, "wrong magic", "expected 2049")


def test_wrong_image_dims(tmp_path):
    p = write(tmp_path / "small", idx_bytes(images(2, side=(27, 28))))
    with pytest.raises(MnistliteError) as e:
        read_images(p)
    assert_fault(e, p, "27x28", "28x28")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(images(3)))
    bad = good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:]
    p = write(tmp_path / "bad.gz", bad)
    with pytest.raises(MnistliteError) as e:
        read_images(p)
    assert_fault(e, p, "corrupt gzip")


def test_gz_suffix_but_not_gzip(tmp_path):
    p = write(tmp_path / "plain.gz", idx_bytes(labels(3)))
    with pytest.raises(MnistliteError) as e:
        read_labels(p)
    assert_fault(e, p, "corrupt gzip")


def test_checksum_mismatch(tmp_path):
    data = idx_bytes(labels(10))
    p = write(tmp_path / "lab.gz", data, gz=True)
    wrong = "0" * 64
    with pytest.raises(MnistliteError) as e:
        read_labels(p, wrong)
    got = hashlib.sha256(data).hexdigest()  # of the decompressed bytes, not the .gz
    assert_fault(e, p, "checksum mismatch", got[:12], wrong[:12], "delete")


def test_label_out_of_range(tmp_path):
    y = labels(10)
    y[7] = 10
    p = write(tmp_path / "lab", idx_bytes(y))
    with pytest.raises(MnistliteError) as e:
        read_labels(p)
    assert_fault(e, p, "label 10", "index 7", "0-9")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=300),
    header=st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03"]),
    gz=st.booleans(),
)
def test_random_bytes_only_raise_mnistlite_error(tmp_path, data, header, gz):
    p = tmp_path / ("random.gz" if gz else "random")
    p.write_bytes(header + data)
    for reader in (read_idx, read_images, read_labels):
        try:
            reader(p)
        except MnistliteError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=200), cut=st.integers(0, 60))
def test_damaged_gzip_only_raises_mnistlite_error(tmp_path, data, cut):
    # Random bytes rarely look like gzip at all: damage a real stream instead.
    stream = gzip.compress(idx_bytes(labels(30)))
    p = tmp_path / "damaged.gz"
    p.write_bytes(stream[:cut] + data + stream[cut + len(data) :])
    try:
        read_labels(p)
    except MnistliteError:
        pass


# --- locating and downloading ---------------------------------------------------


def test_resolve_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MNISTLITE_DATA", raising=False)
    assert resolve_data_root(None) == Path("~/.cache/mnistlite").expanduser()
    monkeypatch.setenv("MNISTLITE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    # An explicit root is the only place searched: no silent fallback to other copies.
    (tmp_path / "env" / "MNIST" / "raw").mkdir(parents=True)
    for f in DATASETS["mnist"].files:
        (tmp_path / "env" / "MNIST" / "raw" / f.name).write_bytes(b"")
    assert all(loading.find_raw_files(DATASETS["mnist"], tmp_path / "env").values())
    with pytest.raises(MnistliteError, match="downloads are turned off"):
        loading.locate_files(DATASETS["mnist"], str(tmp_path / "arg"), download=False)


def test_default_root_ignores_data_beside_the_checkout(monkeypatch, tmp_path):
    # The library holds no development path: ../shared/datasets is found only
    # because the Makefile and CI set $MNISTLITE_DATA.
    monkeypatch.delenv("MNISTLITE_DATA", raising=False)
    (tmp_path / "work" / "repo").mkdir(parents=True)
    (tmp_path / "work" / "shared" / "datasets" / "MNIST" / "raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "repo")
    assert resolve_data_root(None) == Path("~/.cache/mnistlite").expanduser()


def _offline(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable (test)")


def test_offline_download_failure_message(fake, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: calls.append(url) or _offline())
    root = tmp_path / "empty-root"
    with pytest.raises(MnistliteError) as e:
        load_dataset("fake", data_dir=str(root), download=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(root / "FAKE/raw") in msg
    assert "MNISTLITE_DATA" in msg and "--data-dir" in msg
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    # Mirrors in order; stops after the first file no mirror serves.
    assert calls == [
        "http://mirror.invalid/a/train-images-idx3-ubyte.gz",
        "http://mirror.invalid/b/train-images-idx3-ubyte.gz",
    ]
    assert not list((root / "FAKE/raw").glob("*")), "no partial files left behind"


def test_missing_without_download(fake, tmp_path):
    with pytest.raises(MnistliteError) as e:
        load_dataset("fake", data_dir=str(tmp_path / "nothing"), download=False)
    assert str(tmp_path / "nothing" / "FAKE/raw") in str(e.value)


class _Response(io.BytesIO):
    headers = {"Content-Length": None}


def test_download_file_checks_md5_and_renames(monkeypatch, tmp_path):
    body = gzip.compress(idx_bytes(labels(12)))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: _Response(body))
    dest = tmp_path / "dl" / "train-labels-idx1-ubyte.gz"
    with pytest.raises(MnistliteError, match="md5 mismatch"):
        dl.download_file("http://x.invalid/f.gz", dest, "0" * 32)
    assert not dest.parent.exists() or not list(dest.parent.iterdir())
    dl.download_file("http://x.invalid/f.gz", dest, hashlib.md5(body).hexdigest())
    np.testing.assert_array_equal(read_labels(dest), labels(12))
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]


def test_ensure_files_falls_back_to_second_mirror(fake, monkeypatch, tmp_path):
    bodies = {
        f.name: gzip.compress(p.read_bytes()) if p.suffix != ".gz" else p.read_bytes()
        for f in FAKE.files
        for p in [dl.find_file(fake / FAKE.folder, f.name)]
    }

    def urlopen(url, **kw):
        if "/a/" in url:
            raise urllib.error.URLError("first mirror down")
        return _Response(bodies[url.rsplit("/", 1)[1][:-3]])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    root = tmp_path / "fresh"
    found = dl.ensure_files(FAKE, root)
    assert sorted(p.name for p in found.values()) == sorted(f"{f.name}.gz" for f in FAKE.files)
    assert len(load_dataset("fake", data_dir=str(root)).test) == 20


# --- loading -----------------------------------------------------------------------


def test_load_dataset_shapes_and_normalisation(fake):
    d = load_dataset("fake", data_dir=str(fake))
    assert (len(d.train), len(d.test), d.val) == (50, 20, None)
    assert d.train.images.shape == (50, 1, 28, 28) and d.train.images.dtype == torch.float32
    assert d.train.labels.dtype == torch.int64
    expected = (torch.from_numpy(images(50)).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(d.train.images[:, 0], expected)
    assert d.classes == list("abcdefghij") and (d.mean, d.std) == (0.5, 0.25)


def test_env_var_is_used(fake, monkeypatch):
    monkeypatch.setenv("MNISTLITE_DATA", str(fake))
    assert len(load_dataset("fake").train) == 50


def test_count_mismatch(fake, tmp_path):
    root = fake_root(tmp_path / "mismatch", n_train=50, n_train_labels=49)
    with pytest.raises(MnistliteError) as e:
        load_dataset("fake", data_dir=str(root))
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg
    assert "50 images" in msg and "49 labels" in msg


def test_val_split_deterministic_and_disjoint(fake):
    a = load_dataset("fake", data_dir=str(fake), val_size=10)
    b = load_dataset("fake", data_dir=str(fake), val_size=10)
    assert (len(a.train), len(a.val)) == (40, 10)
    torch.testing.assert_close(a.val.images, b.val.images)
    train_idx, val_idx = loading.split_indices(50, 10)
    assert not set(train_idx) & set(val_idx)
    assert sorted([*train_idx, *val_idx]) == list(range(50))
    assert list(train_idx) == sorted(train_idx)
    # The tensors really are those images, and the run's global seed is irrelevant.
    full = load_dataset("fake", data_dir=str(fake))
    torch.testing.assert_close(a.val.images, full.train.images[torch.from_numpy(val_idx)])
    torch.manual_seed(123)
    assert list(loading.split_indices(50, 10)[1]) == list(val_idx)


def test_val_size_too_large(fake):
    with pytest.raises(MnistliteError, match="val_size 50"):
        load_dataset("fake", data_dir=str(fake), val_size=50)


def test_limit_train(fake):
    full = load_dataset("fake", data_dir=str(fake))
    d = load_dataset("fake", data_dir=str(fake), limit_train=7)
    assert len(d.train) == 7 and len(d.test) == 20
    torch.testing.assert_close(d.train.images, full.train.images[:7])
    v = load_dataset("fake", data_dir=str(fake), val_size=10, limit_train=7)
    train_idx, _ = loading.split_indices(50, 10)
    torch.testing.assert_close(v.train.labels, full.train.labels[torch.from_numpy(train_idx[:7])])


def test_unknown_dataset():
    with pytest.raises(MnistliteError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_cache_rereads_changed_file(fake):
    assert len(load_dataset("fake", data_dir=str(fake)).test) == 20
    p = fake / FAKE.folder / "t10k-images-idx3-ubyte"
    write(p, idx_bytes(images(5)))
    os.utime(p, ns=(1, 1))  # a different mtime even on coarse clocks
    with pytest.raises(MnistliteError, match="5 images but"):
        load_dataset("fake", data_dir=str(fake))


def test_split_to_device(fake):
    d = load_dataset("fake", data_dir=str(fake))
    moved = d.test.to("cpu")
    assert len(moved) == 20 and moved.images.device.type == "cpu"


def test_fashion_mnist_spec():
    spec = DATASETS["fashion-mnist"]
    assert spec.folder == "FashionMNIST/raw" and len(spec.classes) == 10
    assert all(f.sha256 is None and f.md5_gz for f in spec.files)
    assert "/usr/share/datasets/fashion-mnist" in spec.system_dirs
    assert DATASETS["mnist"].mirrors[0].startswith("https://ossci-datasets")


# --- the real thing ------------------------------------------------------------------


@pytest.mark.slow
def test_real_mnist(data_root, monkeypatch):
    monkeypatch.setenv("MNISTLITE_DATA", str(data_root))
    d = load_dataset("mnist", download=False)  # found through $MNISTLITE_DATA alone
    assert (len(d.train), len(d.test)) == (60000, 10000)
    assert abs(d.train.images.mean().item()) < 0.01
    assert abs(d.train.images.std().item() - 1) < 0.01
    assert sorted(d.train.labels.unique().tolist()) == list(range(10))
    assert sorted(d.test.labels.unique().tolist()) == list(range(10))
