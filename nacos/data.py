"""Image-classification datasets that work offline: ``load(name, **kw) -> Dataset``; ``available()``.

* ``digits`` — scikit-learn's 1,797 real 8×8 digits, upsampled (bilinear) to 16×16; ships with scikit-learn, so
  it is the embedded default (and CI's data set). Stratified 70/10/20 train/val/test split.
* ``fashion-mnist`` — the IDX files of Debian's ``dataset-fashion-mnist`` package (``apt-get install
  dataset-fashion-mnist``) in ``/usr/share/datasets/fashion-mnist`` or ``root=DIR``; test is the official 10k,
  val a stratified slice of the 60k train set; ``train_size`` / ``test_size`` take deterministic subsets.
* ``folder`` — ``root/<class>/<image files>`` read with PIL (``size=(H, W)``, ``channels=1|3``).
* ``npz`` — an ``.npz`` with arrays ``x`` (N×H×W, N×C×H×W or N×H×W×C) and ``y`` (N integer labels).

``load`` also accepts a path: a directory is read as ``folder``, an ``.npz`` file as ``npz``.

Every split is NCHW float32, normalized by the training split's per-channel mean and std; splits depend only on
``seed``. Problems are :class:`DatasetError` (a ``ValueError``) with a one-line message saying what to do.
"""

from __future__ import annotations

import gzip
import inspect
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class DatasetError(ValueError):
    """A data set that cannot be loaded; the message says why and how to fix it."""


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # [N, C, H, W] float32, normalized
    y: np.ndarray  # [N] int64

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", _frozen(np.asarray(self.x, np.float32)))
        object.__setattr__(self, "y", _frozen(np.asarray(self.y, np.int64)))

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The shape of one example as a graph input: (1, C, H, W)."""
        return (1,) + tuple(self.train.x.shape[1:])

    def __str__(self) -> str:
        c, h, w = self.train.x.shape[1:]
        return (f"{self.name}: {c}×{h}×{w}, {self.num_classes} classes, "
                f"{len(self.train)}/{len(self.val)}/{len(self.test)} train/val/test")


# ---- splitting and normalization ----------------------------------------------------------------------------
def _split_indices(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded split: (rest, held out) with ``fraction`` of each class held out (≥ 1 if it has 2+)."""
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction))
        k = min(max(k, 1 if len(idx) > 1 and fraction > 0 else 0), len(idx) - 1 if len(idx) > 1 else 0)
        held.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(held))


def _subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size >= len(y):
        return x, y
    _, keep = _split_indices(y, size / len(y), seed)
    return x[keep], y[keep]


def _finish(name: str, x_tr, y_tr, x_va, y_va, x_te, y_te, classes) -> Dataset:
    """Normalize every split with the training split's per-channel statistics."""
    for split, x in (("train", x_tr), ("val", x_va), ("test", x_te)):
        if not np.isfinite(np.asarray(x, np.float32)).all():
            raise DatasetError(f"{name}: its {split} images hold NaN or infinite values")
    x_tr = np.asarray(x_tr, np.float32)
    mean = x_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = x_tr.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    norm = lambda x: (np.asarray(x, np.float32) - mean) / std  # noqa: E731
    return Dataset(name, Split(norm(x_tr), y_tr), Split(norm(x_va), y_va), Split(norm(x_te), y_te),
                   tuple(str(c) for c in classes), tuple(mean.ravel().tolist()), tuple(std.ravel().tolist()))


def _three_way(name, x, y, classes, seed, val_fraction, test_fraction) -> Dataset:
    if len(np.unique(y)) < 2:
        raise DatasetError(f"{name}: needs at least 2 classes, found {len(np.unique(y))}")
    rest, test = _split_indices(y, test_fraction, seed)
    tr, va = _split_indices(y[rest], val_fraction / max(1e-9, 1 - test_fraction), seed + 1)
    tr, va = rest[tr], rest[va]
    if 0 in (len(tr), len(va), len(test)):
        raise DatasetError(f"{name}: {len(y)} images are too few for a train/validation/test split "
                           f"({len(tr)}/{len(va)}/{len(test)}); give at least 3 per class")
    return _finish(name, x[tr], y[tr], x[va], y[va], x[test], y[test], classes)


# ---- loaders ------------------------------------------------------------------------------------------------
def load_digits(seed: int = 0, size: int = 16, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's digits (real 8×8 scans, 0..16), bilinearly upsampled to ``size``×``size``."""
    from scipy.ndimage import zoom

    images, target = _digits_arrays()
    x = images.astype(np.float32) / 16.0
    if size != 8:
        x = zoom(x, (1, size / 8, size / 8), order=1, grid_mode=True, mode="nearest")
    return _three_way("digits", x[:, None], target, [str(c) for c in range(10)], seed, val_fraction,
                      test_fraction)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8], labels): the csv scikit-learn ships, read directly because importing
    sklearn.datasets costs seconds; sklearn's own loader is the fallback if its layout ever changes."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return d.images, d.target


def _read_idx(path: Path, offset: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    except (OSError, EOFError, ValueError) as e:
        raise DatasetError(f"fashion-mnist: cannot read {path}: {e}") from None


def _idx_file(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"fashion-mnist: {root / (stem + '.gz')} not found; install the data with "
                       f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass root=DIR holding the "
                       f"IDX files")


def load_fashion_mnist(root: str | os.PathLike | None = None, seed: int = 0, train_size: int | None = None,
                       val_size: int = 5000, test_size: int | None = None) -> Dataset:
    """Fashion-MNIST from its IDX files (see the module docstring); ``train_size`` keeps a stratified subset."""
    root = Path(root) if root is not None else FASHION_DIR
    parts = {}
    for split in ("train", "t10k"):
        images = _read_idx(_idx_file(root, f"{split}-images-idx3-ubyte"), 16)
        labels = _read_idx(_idx_file(root, f"{split}-labels-idx1-ubyte"), 8).astype(np.int64)
        if images.size != len(labels) * 28 * 28:
            raise DatasetError(f"fashion-mnist: {split} images ({images.size} bytes) do not match "
                               f"{len(labels)} labels of 28×28; the files in {root} are damaged")
        parts[split] = (images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, labels)
    x, y = parts["train"]
    tr, va = _split_indices(y, val_size / len(y), seed)
    x_tr, y_tr = _subset(x[tr], y[tr], train_size, seed + 2)
    x_te, y_te = _subset(*parts["t10k"], test_size, seed + 3)
    return _finish("fashion-mnist", x_tr, y_tr, x[va], y[va], x_te, y_te, FASHION_CLASSES)


def load_folder(root: str | os.PathLike, size: tuple[int, int] | None = None, channels: int | None = None,
                seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Dataset:
    """``root/<class>/<image>``: class names are the sorted subdirectory names; images are resized to ``size``
    (default: the first image's size) and read as grayscale (``channels=1``) or RGB (``channels=3``; default:
    grayscale when every image is)."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"folder: {root} is not a directory (expected {root}/<class>/<images>)")
    def images_in(folder: Path) -> list[Path]:
        return [f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]

    # hidden folders (.ipynb_checkpoints, .git) and folders without images are not classes
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and images_in(p))
    files = [(f, k) for k, c in enumerate(classes) for f in images_in(root / c)]
    if len(classes) < 2 or not files:
        raise DatasetError(f"folder: {root} needs 2+ class subdirectories holding images "
                           f"({', '.join(IMAGE_SUFFIXES)}); found {len(classes)} classes, {len(files)} images")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                images.append(im.copy())
        except (OSError, UnidentifiedImageError) as e:
            raise DatasetError(f"folder: cannot read image {f}: {e}") from None
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I", "I;16", "F") for im in images) else 3
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DatasetError(f"folder: channels must be 1 or 3, got {channels}")
    w, h = (size[1], size[0]) if size else images[0].size
    x = np.stack([_pixels(im, mode, (w, h)) for im in images])
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
    y = np.array([k for _, k in files], np.int64)
    return _three_way(root.name, x, y, classes, seed, val_fraction, test_fraction)


def _pixels(im, mode: str, size: tuple[int, int]) -> np.ndarray:
    """An image as float32 in [0, 1], resized. 16-bit and float grayscale keep their range (PIL's convert("L")
    clips them to 255: a 16-bit scan would come out white)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, np.float32) / (1.0 if im.mode == "F" else 65535.0)  # 16-bit PNGs open as I;16 or I
        g = np.asarray(Image.fromarray(a, mode="F").resize(size, Image.BILINEAR), np.float32)
        return g if mode == "L" else np.repeat(g[..., None], 3, axis=2)
    return np.asarray(im.convert(mode).resize(size, Image.BILINEAR), np.float32) / 255.0


def load_npz(path: str | os.PathLike, seed: int = 0, val_fraction: float = 0.1,
             test_fraction: float = 0.2) -> Dataset:
    """Arrays ``x`` (N×H×W, N×C×H×W or N×H×W×C with C ∈ {1, 3}) and ``y`` (N labels) from an .npz; the
    labels are renumbered 0..K−1 in sorted order and keep their values as the class names."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"npz: {path} does not exist")
    if not zipfile.is_zipfile(path):  # np.load would guess "pickle" for any other bytes: a confusing message
        raise DatasetError(f"npz: cannot read {path}: not a valid .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files or "y" not in f.files:
                raise DatasetError(f"npz: {path} must hold arrays 'x' and 'y', it has {sorted(f.files)}")
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"npz: cannot read {path}: not a valid .npz file ({type(e).__name__}: {e})") from None
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim == 4 and x.shape[1] not in (1, 3):  # neither axis is 1 (gray) or 3 (RGB) channels: e.g. RGBA
        raise DatasetError(f"npz: {path}: x{list(x.shape)} has no axis of 1 or 3 channels (N×C×H×W or "
                           "N×H×W×C, C ∈ {1, 3}); drop the alpha channel of RGBA images")
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"npz: {path}: expected x of N×H×W or N×C×H×W and integer y of N, got x{list(x.shape)} "
                           f"{x.dtype} and y{list(y.shape)} {y.dtype}")
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"npz: {path}: x must be numeric, got {x.dtype}")
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    labels, y = np.unique(y, return_inverse=True)  # renumbered 0..K-1; the class names keep the file's labels
    return _three_way(path.stem, x, y.astype(np.int64), [str(c) for c in labels.tolist()], seed,
                      val_fraction, test_fraction)


# ---- registry ---------------------------------------------------------------------------------------------
_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "folder": load_folder,
    "npz": load_npz,
}


def register(name: str, loader: Callable[..., Dataset]) -> None:
    if name in _LOADERS:
        raise ValueError(f"dataset {name!r} registered twice")
    _LOADERS[name] = loader


def available() -> list[str]:
    return sorted(_LOADERS)


def load(name: str | os.PathLike, **kw) -> Dataset:
    """The data set ``name`` (see the module docstring), or the directory / .npz file at that path."""
    if isinstance(name, Dataset):
        return name
    key = str(name)
    path = Path(key)
    if key in _LOADERS:
        return _call(key, _LOADERS[key], (), kw)
    if path.suffix.lower() == ".npz":
        return _call("npz", load_npz, (path,), kw)
    if path.is_dir():
        return _call("folder", load_folder, (path,), kw)
    raise DatasetError(f"unknown dataset {key!r}; valid names: {', '.join(available())} "
                       f"(or a directory of class folders, or an .npz file)")


def _call(label: str, loader: Callable[..., Dataset], args: tuple, kw: dict) -> Dataset:
    """``loader(*args, **kw)``; ``train_size`` / ``test_size`` work for every loader (those that do not take them
    get stratified subsets of their splits, normalized as the whole training split), and an option no loader
    takes is a :class:`DatasetError`, not a ``TypeError``."""
    for k in ("train_size", "test_size"):  # checked for every loader (Fashion-MNIST took 0 as an empty split)
        v = kw.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise DatasetError(f"{label}: {k}={v!r} must be a positive number of examples")
    params = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        sizes = {k: kw.pop(k) for k in ("train_size", "test_size") if k in kw and k not in params}
        unknown = sorted(k for k in kw if k not in params)
        if unknown:
            takes = ", ".join(n for n in params if n not in ("root", "path")) + ", train_size, test_size"
            raise DatasetError(f"{label}: unknown option(s) {', '.join(unknown)}; it takes {takes}")
    else:
        sizes = {}
    ds = loader(*args, **kw)
    if not sizes:
        return ds
    seed = int(kw.get("seed", 0))
    train = Split(*_subset(ds.train.x, ds.train.y, sizes.get("train_size"), seed + 2))
    test = Split(*_subset(ds.test.x, ds.test.y, sizes.get("test_size"), seed + 3))
    return replace(ds, train=train, test=test)


def fashion_mnist_installed(root: str | os.PathLike | None = None) -> bool:
    root = Path(root) if root is not None else FASHION_DIR
    return all(any((root / (s + z)).is_file() for z in (".gz", "")) for s in
               ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte"))


create = load  # the registry spelling used by the other extension points
