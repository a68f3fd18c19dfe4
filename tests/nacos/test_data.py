"""nacos.data: the offline data sets, deterministic splits, and one-line errors for bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nacos import data
from nacos.data import DatasetError


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_digits_is_nchw_float32_normalized_and_split(digits):
    assert digits.input_shape == (1, 1, 16, 16) and digits.num_classes == 10
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == np.float32 and split.x.shape[1:] == (1, 16, 16) and split.y.dtype == np.int64
        assert not split.x.flags.writeable  # records are frozen, arrays too
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert abs(float(digits.train.x.mean())) < 1e-3 and abs(float(digits.train.x.std()) - 1) < 1e-3
    assert set(np.bincount(digits.test.y)) <= {35, 36, 37}  # stratified: every class ~20 %


def test_splits_are_deterministic_and_disjoint(digits):
    again = data.load("digits")
    np.testing.assert_array_equal(again.test.x, digits.test.x)
    other = data.load("digits", seed=1)
    assert not np.array_equal(other.test.y, digits.test.y)
    rows = lambda s: {r.tobytes() for r in s.x.reshape(len(s), -1)}  # noqa: E731
    # a few digits images are exact duplicates of each other; the splits must still be nearly disjoint
    assert len(rows(digits.train) & rows(digits.test)) <= 3


def test_unknown_name_lists_valid_ones():
    with pytest.raises(DatasetError, match="unknown dataset 'cifar10'.*digits, fashion-mnist") as e:
        data.load("cifar10")
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
    assert data.available() == ["digits", "fashion-mnist", "folder", "npz"]


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as e:
        data.load("fashion-mnist", root=tmp_path / "nowhere")
    assert "\n" not in str(e.value)


def _write_idx(folder, split, n, rng):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + np.array([n, 28, 28], ">i4").tobytes() + images.tobytes())
    with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + np.array([n], ">i4").tobytes() + labels.tobytes())
    return images, labels


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path, "train", 200, rng)
    test_images, test_labels = _write_idx(tmp_path, "t10k", 50, rng)
    ds = data.load("fashion-mnist", root=tmp_path, val_size=40, train_size=100)
    assert ds.input_shape == (1, 1, 28, 28) and ds.num_classes == 10
    assert (len(ds.train), len(ds.val), len(ds.test)) == (100, 40, 50)
    np.testing.assert_array_equal(ds.test.y, test_labels)
    # normalization is affine: the first test image's pixel order is preserved
    raw = test_images[0].astype(np.float32).ravel()
    assert np.corrcoef(raw, ds.test.x[0].ravel())[0, 1] > 0.999
    assert data.fashion_mnist_installed(tmp_path)


def test_damaged_fashion_file_is_a_clear_error(tmp_path):
    _write_idx(tmp_path, "train", 20, np.random.default_rng(0))
    _write_idx(tmp_path, "t10k", 10, np.random.default_rng(1))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="fashion-mnist: cannot read .*t10k-images") as e:
        data.load("fashion-mnist", root=tmp_path)
    assert "\n" not in str(e.value)


def test_npz_arrays_nhwc_and_nchw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20) + 5  # labels need not start at 0
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    ds = data.load(tmp_path / "mine.npz")
    assert ds.input_shape == (1, 3, 12, 12) and ds.num_classes == 3 and ds.name == "mine"
    assert len(ds.train) + len(ds.val) + len(ds.test) == 60
    np.savez(tmp_path / "gray.npz", x=rng.random((30, 8, 8)), y=np.arange(30) % 2)
    assert data.load("npz", path=tmp_path / "gray.npz").input_shape == (1, 1, 8, 8)


@pytest.mark.parametrize("content, message", [
    (b"this is not a zip archive", "not a valid .npz file"),
    (None, "must hold arrays 'x' and 'y'"),
])
def test_corrupt_npz_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, images=np.zeros((4, 8, 8)))
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as e:
        data.load(path)
    assert "\n" not in str(e.value)


def test_truncated_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((40, 8, 8)), y=np.arange(40) % 2)
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DatasetError, match="not a valid .npz file"):
        data.load(bad)


def test_folder_of_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        for i in range(10):
            pixels = (rng.random((10, 14)) * 100 + 100 * k).astype(np.uint8)
            Image.fromarray(pixels, "L").save(tmp_path / cls / f"{i}.png")
    ds = data.load(tmp_path)
    assert ds.classes == ("cat", "dog") and ds.input_shape == (1, 1, 10, 14)
    resized = data.load("folder", root=tmp_path, size=(8, 8), channels=3)
    assert resized.input_shape == (1, 3, 8, 8)
    with pytest.raises(DatasetError, match="2\\+ class subdirectories"):
        data.load("folder", root=tmp_path / "cat")


def test_folder_skips_hidden_and_empty_folders_and_keeps_16_bit_range(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, cls in enumerate(["a", "b"]):
        (tmp_path / cls).mkdir()
        for i in range(6):
            pixels = (rng.random((8, 8)) * 20000 + 20000 * k + 1000).astype(np.uint16)  # 16-bit scans
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "empty").mkdir()
    ds = data.load(tmp_path)
    assert ds.classes == ("a", "b")
    raw = ds.train.x * np.array(ds.std).reshape(1, -1, 1, 1) + np.array(ds.mean).reshape(1, -1, 1, 1)
    assert 0.0 < raw.min() and raw.max() < 1.0 and raw.std() > 0.05  # not clipped to white by convert("L")


def test_npz_without_a_channel_axis_of_1_or_3_is_refused(tmp_path):
    path = tmp_path / "rgba.npz"
    np.savez(path, x=np.zeros((12, 16, 16, 4), np.uint8), y=np.arange(12) % 2)
    with pytest.raises(DatasetError, match="no axis of 1 or 3 channels"):
        data.load(str(path))


def test_train_and_test_sizes_work_for_every_data_set_and_unknown_options_are_dataset_errors():
    # the docs give train_size=/test_size= for every loader; only fashion-mnist took them (digits: TypeError)
    full = data.load("digits")
    ds = data.load("digits", train_size=200, test_size=100)
    assert abs(len(ds.train) - 200) <= 2 and abs(len(ds.test) - 100) <= 2 and len(ds.val) == len(full.val)
    assert np.bincount(ds.train.y).min() >= 18  # stratified: every class keeps its share
    again = data.load("digits", train_size=200, test_size=100)
    np.testing.assert_array_equal(ds.train.y, again.train.y)  # deterministic
    with pytest.raises(data.DatasetError, match="unknown option.*bogus"):
        data.load("digits", bogus=1)
    with pytest.raises(data.DatasetError, match="train_size=0"):
        data.load("digits", train_size=0)


def test_npz_class_names_keep_the_labels_and_non_finite_images_are_refused(tmp_path):
    # labels {3, 7, 9} were renumbered with class names ('0', '1', '2'): class "1" meant label 7
    rng = np.random.default_rng(0)
    y = np.repeat([3, 7, 9], 20)
    np.savez(tmp_path / "gap.npz", x=rng.random((60, 8, 8)).astype(np.float32), y=y)
    ds = data.load(tmp_path / "gap.npz")
    assert ds.classes == ("3", "7", "9") and set(ds.train.y.tolist()) == {0, 1, 2}
    x = rng.random((60, 8, 8)).astype(np.float32)
    x[5, 2, 2] = np.nan  # it loaded, with a NaN mean, and trained to NaN losses
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    with pytest.raises(DatasetError, match="NaN or infinite"):
        data.load(tmp_path / "nan.npz")


def test_sizes_are_checked_for_loaders_that_take_them_too(tmp_path, monkeypatch):
    # Fashion-MNIST takes train_size itself, and 0 gave an empty training split and all-NaN val/test
    called = []
    monkeypatch.setitem(data._LOADERS, "sized", lambda train_size=None, test_size=None: called.append(1))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(DatasetError, match="must be a positive number"):
            data.load("sized", train_size=bad)
    assert not called
