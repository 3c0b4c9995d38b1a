"""Data sets and minibatches.

* :func:`digits` -- the 8x8 handwritten digits (1797 images, shipped with
  symfuse: no download, no extra package), optionally resized to 28x28
  for LeNet.
* :func:`mnist` -- MNIST (or Fashion-MNIST) from the standard IDX files in a
  directory, gzipped or not; :func:`read_idx` / :func:`write_idx` for any IDX file.
* :func:`synthetic` -- a learnable random classification problem of any shape.
* :func:`minibatches` -- a (shuffled) minibatch iterator.

Images are float32 NCHW in [0, 1], labels int32. Loaders return a
:class:`Split`, which also unpacks Keras-style:
``(x_train, y_train), (x_test, y_test) = digits()``.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import DataError


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    classes: int | None = None
    name: str = ""

    def __iter__(self):
        yield self.x_train, self.y_train
        yield self.x_test, self.y_test

    def __repr__(self):
        return (f"Split({self.name or 'data'}: train x{self.x_train.shape} {self.x_train.dtype}, "
                f"test x{self.x_test.shape}, classes={self.classes})")


# --------------------------------------------------------------------------- splitting, resizing
DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets", "digits.csv.gz")
TEXT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets", "proverbs.txt.gz")

def split(x, y=None, test_fraction: float = 0.2, seed: int = 0, stratify: bool = True, name: str = "") -> Split:
    """A seeded train/test split; with labels and ``stratify``, each class is split in
    the same proportion (every class with at least 2 samples keeps one on each side)."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n = len(x)
    rng = np.random.default_rng(seed)
    if y is not None and stratify:
        test_idx = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            rng.shuffle(idx)
            k = int(round(test_fraction * len(idx)))
            if test_fraction > 0 and len(idx) >= 2:
                k = min(max(k, 1), len(idx) - 1)
            test_idx.append(idx[:k])
        test = np.sort(np.concatenate(test_idx)) if test_idx else np.zeros(0, np.int64)
    else:
        perm = rng.permutation(n)
        test = np.sort(perm[:int(round(test_fraction * n))])
    mask = np.ones(n, bool)
    mask[test] = False
    train = np.flatnonzero(mask)
    # shuffle the training order once so that a non-shuffling iterator still mixes classes
    train = train[rng.permutation(len(train))]
    classes = int(np.max(y)) + 1 if y is not None and len(y) else None
    return Split(x[train], None if y is None else y[train], x[test], None if y is None else y[test], classes, name)


def resize_bilinear(images: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of the last two axes (half-pixel centres, edge clamped: the
    convention of PIL, OpenCV and ``torch.nn.functional.interpolate(...,
    align_corners=False)``). Pure numpy."""
    oh, ow = (size, size) if isinstance(size, int) else size
    a = np.asarray(images, dtype=np.float64)
    ih, iw = a.shape[-2:]

    def axis(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    ylo, yhi, wy = axis(ih, oh)
    xlo, xhi, wx = axis(iw, ow)
    rows = a[..., ylo, :] * (1 - wy)[:, None] + a[..., yhi, :] * wy[:, None]
    out = rows[..., xlo] * (1 - wx) + rows[..., xhi] * wx
    return out


# --------------------------------------------------------------------------- digits
def digits(size: int = 8, test_fraction: float = 0.2, seed: int = 0, box: int | None = None) -> Split:
    """The 1797 8x8 digits of the UCI optical digits set (shipped with symfuse,
    ``nn/datasets/digits.csv.gz``, the same as ``sklearn.datasets.load_digits``;
    no download), scaled from 0..16 to [0, 1], as float32
    ``(N, 1, size, size)`` and int32 labels, split (stratified, seeded) into train
    and ``test_fraction`` test. ``size=28`` upsamples with :func:`resize_bilinear`
    (pure numpy) to LeNet's 28x28 input; any other size works the same way.
    ``box`` (< size) instead resizes each digit to ``box x box`` and centres it on a
    blank ``size x size`` canvas: ``digits(28, box=20)`` frames the digits as MNIST
    does (20x20 digits in 28x28 images). The split is the same for every size."""
    table = np.loadtxt(DIGITS_FILE, delimiter=",")               # 64 pixels and the label per row
    x = (table[:, :64].reshape(-1, 8, 8) / 16.0)[:, None]         # (N, 1, 8, 8)
    size = int(size)
    inner = size if box is None else int(box)
    if not 1 <= inner <= size:
        raise ValueError(f"digits: box must be in [1, size={size}], got {box!r}")
    if inner != 8:
        x = np.clip(resize_bilinear(x, inner), 0.0, 1.0)
    if inner != size:
        lo = (size - inner) // 2
        x = np.pad(x, ((0, 0), (0, 0), (lo, size - inner - lo), (lo, size - inner - lo)))
    x = x.astype(np.float32)
    y = table[:, 64].astype(np.int32)
    s = split(x, y, test_fraction, seed, name=f"digits{size}" + (f"-box{inner}" if inner != size else ""))
    s.classes = 10
    return s


@dataclass
class Text:
    """A character corpus as int32 ids: ``train`` and ``valid`` (the last
    ``valid_fraction`` of the text), and the alphabet (``chars[i]`` is id i)."""
    train: np.ndarray
    valid: np.ndarray
    chars: str

    @property
    def vocab(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted({c for c in s if c not in index})
        if unknown:
            raise DataError(f"text: characters {unknown!r} are not in the corpus's alphabet")
        return np.array([index[c] for c in s], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def windows(self, part: str, steps: int, stride: int | None = None) -> Split:
        """Next-character pairs ``x = ids[i:i+steps]``, ``y = ids[i+1:i+steps+1]`` every
        ``stride`` characters of ``part`` ("train" or "valid"), as a Split whose test
        half is the valid part's windows."""
        def cut(ids):
            st = stride or steps
            starts = np.arange(0, len(ids) - steps - 1, st)
            idx = starts[:, None] + np.arange(steps + 1)
            w = ids[idx] if len(starts) else np.zeros((0, steps + 1), np.int32)
            return w[:, :-1], w[:, 1:]
        xt, yt = cut(self.train if part == "train" else self.valid)
        xv, yv = cut(self.valid)
        return Split(xt, yt, xv, yv, classes=self.vocab, name=f"text{steps}")


def text(path: str | None = None, valid_fraction: float = 0.1) -> Text:
    """A character corpus: by default the one shipped with symfuse (the Books of
    Proverbs and Ecclesiastes, King James Version; public domain; 108 KB), or any
    UTF-8 text file (``.gz`` read compressed). Comment lines starting with ``#``
    at the top are skipped."""
    p = path or TEXT_FILE
    if not os.path.isfile(p):
        raise DataError(f"text: no file {p!r}")
    opener = gzip.open if p.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    body = "\n".join(lines).strip("\n") + "\n"
    chars = "".join(sorted(set(body)))
    ids = np.frombuffer(body.encode("utf-32-le"), np.uint32)
    table = np.zeros(int(ids.max()) + 1, np.int32)
    table[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.int32)
    ids = table[ids]
    cut = int(len(ids) * (1 - valid_fraction))
    return Text(ids[:cut], ids[cut:], chars)


# --------------------------------------------------------------------------- IDX / MNIST
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path):
    with open(path, "rb") as fh:
        head = fh.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip-compressed or not, detected from its
    first bytes). Raises :class:`DataError` naming the file on a bad magic number,
    an unknown type code, or a truncated file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"IDX file {path!r} does not exist")
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"IDX file {path!r}: cannot read it ({type(e).__name__}: {e})") from e
    if len(raw) < 4:
        raise DataError(f"IDX file {path!r}: only {len(raw)} bytes, too short for the 4-byte magic number")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"IDX file {path!r}: bad magic number 0x{raw[:4].hex()} (expected 0x0000 then a type "
                        f"code in {[hex(c) for c in _IDX_DTYPES]} and the number of dimensions); "
                        "is this an IDX file?")
    need = 4 + 4 * ndim
    if len(raw) < need:
        raise DataError(f"IDX file {path!r}: truncated header ({len(raw)} bytes, {need} needed)")
    shape = struct.unpack(f">{ndim}I", raw[4:need])
    dt = _IDX_DTYPES[code]
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - need != count * dt.itemsize:
        raise DataError(f"IDX file {path!r}: header says shape {shape} of {dt.name} ({count * dt.itemsize} "
                        f"bytes of data) but the file has {len(raw) - need} bytes of data")
    return np.frombuffer(raw, dtype=dt, count=count, offset=need).reshape(shape).astype(dt.newbyteorder("="))


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write an array as an IDX file (gzip-compressed if ``compress`` or the path ends in .gz)."""
    a = np.asarray(array)
    codes = {v.newbyteorder("=").name if v.itemsize > 1 else v.name: k for k, v in _IDX_DTYPES.items()}
    name = a.dtype.newbyteorder("=").name if a.dtype.itemsize > 1 else a.dtype.name
    if name not in codes:
        raise DataError(f"write_idx: dtype {a.dtype} has no IDX type code")
    code = codes[name]
    payload = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    payload += np.ascontiguousarray(a, dtype=_IDX_DTYPES[code]).tobytes()
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as fh:
        fh.write(payload)


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


def _find(directory, base):
    """The file for ``base`` in ``directory``: plain, .gz, or with a '.' before 'idx'."""
    alt = base.replace("-idx", ".idx")
    for cand in (base, base + ".gz", alt, alt + ".gz"):
        p = os.path.join(directory, cand)
        if os.path.isfile(p):
            return p
    raise DataError(f"mnist: missing file {base!r} (or {base}.gz) in directory {directory!r}; "
                    f"expected the four IDX files {sorted(MNIST_FILES.values())}")


def mnist(path, flatten: bool = False) -> Split:
    """MNIST from a directory holding the four standard IDX files (gzipped or not):
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte. Returns float32 images ``(N, 1, 28, 28)`` in [0, 1]
    (``(N, 784)`` with ``flatten``) and int32 labels."""
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise DataError(f"mnist: directory {directory!r} does not exist")
    arrays = {k: read_idx(_find(directory, base)) for k, base in MNIST_FILES.items()}
    out = []
    for part in ("train", "test"):
        img, lab = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if img.ndim != 3:
            raise DataError(f"mnist: {MNIST_FILES[part + '_images']} in {directory!r} has shape {img.shape}, "
                            "expected (N, rows, cols)")
        if lab.ndim != 1 or len(lab) != len(img):
            raise DataError(f"mnist: {MNIST_FILES[part + '_labels']} in {directory!r} has shape {lab.shape}, "
                            f"expected ({len(img)},) to match the images")
        x = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
        x = x.reshape(len(x), -1) if flatten else x[:, None]
        out += [x, lab.astype(np.int32)]
    classes = max(10, int(max(out[1].max(initial=-1), out[3].max(initial=-1))) + 1)   # MNIST: 10
    return Split(out[0], out[1], out[2], out[3], classes, "mnist")


# --------------------------------------------------------------------------- synthetic
def synthetic(n: int, shape=(784,), classes: int = 10, seed: int = 0, noise: float = 0.15,
              dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """A learnable random problem: ``n`` samples of ``shape`` in [0, 1], each its
    class's random prototype plus Gaussian noise (clipped), and int32 labels."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0.0, 1.0, (classes, *shape))
    y = rng.integers(0, classes, n).astype(np.int32)
    x = np.clip(protos[y] + rng.normal(0.0, noise, (n, *shape)), 0.0, 1.0).astype(dtype)
    return x, y


# --------------------------------------------------------------------------- augmentation
def random_shift(x: np.ndarray, max_shift: int = 2, rng=None) -> np.ndarray:
    """Translate each image of ``x`` (..., H, W) by a random whole number of pixels in
    [-max_shift, max_shift] along each axis, filling with zeros (data augmentation;
    use as ``fit(..., augment=lambda xb, rng: random_shift(xb, 2, rng))``)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = np.asarray(x)
    if max_shift <= 0:
        return x.copy()
    m = int(max_shift)
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(m, m), (m, m)]
    big = np.pad(x, pad)
    out = np.empty_like(x)
    shifts = rng.integers(-m, m + 1, size=(len(x), 2))
    for i, (dy, dx) in enumerate(shifts):
        out[i] = big[i, ..., m - dy:m - dy + h, m - dx:m - dx + w]
    return out


# --------------------------------------------------------------------------- minibatches
def minibatches(x, y=None, batch_size: int = 128, shuffle: bool = True, seed=None,
                drop_last: bool = True) -> Iterator:
    """Yield ``(x_batch, y_batch)`` (or ``x_batch`` when ``y`` is None) covering the
    data once. ``shuffle`` permutes with ``seed`` (an int, a numpy Generator -- pass
    the same Generator each epoch for a new order every epoch -- or None for a fresh
    random order). ``drop_last`` skips a final partial batch, which static-shape
    compiled functions cannot take."""
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"minibatches: x has {n} samples but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"minibatches: batch_size must be >= 1, got {batch_size}")
    if shuffle:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for s in range(0, stop, batch_size):
        idx = order[s:s + batch_size]
        if y is None:
            yield x[idx]
        else:
            yield x[idx], y[idx]


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
