"""A training loop (:func:`fit`), batched inference (:func:`predict`,
:func:`evaluate`) and a dependency-free PNG writer (:func:`save_samples_png`).

    from symfuse import nn
    data = nn.data.digits(size=28)
    m = nn.zoo.lenet(batch=50)
    history = nn.fit(m, data, epochs=10, device="cpu")
    history[-1]["test_accuracy"]

``fit`` prints the training step's compile report once, shows a progress bar
(``tqdm`` when it is installed, else a one-line text bar), and prints one summary
line per epoch; it returns a :class:`History`, a list of one dict per epoch.
"""
from __future__ import annotations

import math
import os
import struct
import sys
import time
import zlib

import numpy as np

from ..ir.symdim import concrete
from . import data as D

# --------------------------------------------------------------------------- progress bars


class _TextBar:
    """Minimal stand-in for tqdm: a carriage-return bar on a terminal, nothing otherwise."""

    def __init__(self, total, desc, file=None):
        self.total, self.desc, self.n = total, desc, 0
        self.file = file or sys.stderr
        self.tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.postfix = ""
        self._last = 0.0

    def update(self, k=1):
        self.n += k
        now = time.perf_counter()
        if self.tty and (now - self._last > 0.1 or self.n == self.total):
            self._last = now
            frac = self.n / self.total if self.total else 1.0
            bar = "#" * int(25 * frac)
            self.file.write(f"\r{self.desc} [{bar:<25}] {self.n}/{self.total} {self.postfix}")
            self.file.flush()

    def set_postfix_str(self, s, refresh=False):
        self.postfix = s

    def close(self):
        if self.tty:
            self.file.write("\n")
            self.file.flush()


def _bar(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, desc)
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.25)


# --------------------------------------------------------------------------- helpers
class History(list):
    """One dict per epoch, plus ``compile_s`` (seconds to compile the training step)
    and ``report`` (its :class:`~symfuse.compiler.report.CompileReport`)."""

    compile_s: float = 0.0
    report = None

    def metric(self, key) -> list:
        return [h[key] for h in self]


def _as_split(data) -> D.Split:
    if isinstance(data, D.Split):
        return data
    if isinstance(data, np.ndarray):
        return D.Split(data, None, data[:0], None)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        a, b = data
        if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):   # ((xtr, ytr), (xte, yte))
            return D.Split(a[0], a[1] if len(a) > 1 else None, b[0], b[1] if len(b) > 1 else None)
        if isinstance(a, np.ndarray) and (b is None or isinstance(b, np.ndarray)):   # (x, y): no test set
            return D.Split(a, b, a[:0], None if b is None else b[:0])
    raise TypeError("fit: data must be a symfuse.nn.data.Split, ((x_train, y_train), (x_test, y_test)), "
                    f"(x, y) or an array of inputs; got {type(data).__name__}")


def _fit_shape(x, shape, dtype, what):
    """Reshape samples to the model's per-sample shape (e.g. 1x8x8 images for a 64-input RBM)."""
    x = np.asarray(x)
    if x.shape[1:] != tuple(shape):
        if math.prod(x.shape[1:]) != math.prod(shape):
            raise ValueError(f"fit: {what} samples have shape {x.shape[1:]}, the model expects {tuple(shape)}")
        x = x.reshape(len(x), *shape)
    return x.astype(dtype, copy=False)


def predict(predict_fn, x) -> np.ndarray:
    """Run a compiled fixed-batch ``x -> y`` function over all of ``x``: the last
    partial batch is padded with zeros and the padding dropped. A function whose
    batch is chosen at run time takes ``x`` whole (at most its ``max_batch`` rows
    a call)."""
    batch = predict_fn.inputs[0].type.shape[0]
    shape = predict_fn.inputs[0].type.shape[1:]
    x = _fit_shape(x, shape, predict_fn.inputs[0].dtype.np, "predict")
    if type(batch) is not int:
        step = predict_fn.sizes.maximum or max(len(x), 1)
        outs = [np.asarray(predict_fn(x[s:s + step])) for s in range(0, len(x), step)]
        return np.concatenate(outs) if outs else np.zeros(
            (0,) + tuple(concrete(predict_fn.outputs[0].shape[1:], {repr(batch): 0})),
            predict_fn.outputs[0].dtype.np)
    outs = []
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        k = len(xb)
        if k < batch:
            xb = np.concatenate([xb, np.zeros((batch - k, *shape), xb.dtype)])
        outs.append(np.asarray(predict_fn(xb))[:k])
    if not outs:
        return np.zeros((0,) + tuple(predict_fn.outputs[0].shape[1:]), predict_fn.outputs[0].dtype.np)
    return np.concatenate(outs)


def classification_metrics(probs, y) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of class probabilities against integer labels."""
    if len(y) == 0:
        return float("nan"), float("nan")
    y = np.asarray(y).reshape(-1)               # sequence models: one label per step
    probs = np.asarray(probs).reshape(len(y), -1)
    p = np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-12, 1.0)
    return float(-np.log(p).mean()), float((probs.argmax(axis=1) == y).mean())


def evaluate(zoo_model, x, y=None, device=None, batch: int | None = None) -> dict:
    """Eval-mode metrics of a ZooModel on all of ``x`` (any number of samples):
    ``{"loss", "accuracy"}`` for classifiers, ``{"recon_error"}`` for the RBM."""
    f = zoo_model.predict_function(device, batch=batch)
    out = predict(f, x)
    if zoo_model.kind == "rbm":
        xx = _fit_shape(x, zoo_model.input_shape, zoo_model.dtype, "evaluate")
        return {"recon_error": float(np.mean((out.astype(np.float64) - xx) ** 2)) if len(xx) else float("nan")}
    loss, acc = classification_metrics(out, np.asarray(y))
    return {"loss": loss, "accuracy": acc}


# --------------------------------------------------------------------------- fit
def fit(model, data, epochs: int = 1, batch_size: int | None = None, device=None, progress: bool = True,
        verbose: bool = True, seed: int = 0, eval_batch: int | None = None, augment=None, on_epoch_end=None,
        log=print, checkpoint=None, resume: bool = False, distributed: bool = False) -> History:
    """Train for ``epochs`` passes over the training data.

    model: a :class:`~symfuse.nn.zoo.ZooModel`, or compiled functions: a training
    step ``train_fn`` (``(x, y) -> loss`` or ``-> [loss, accuracy]``; or ``x -> error``
    for unsupervised models), or a pair ``(train_fn, predict_fn)`` where
    ``predict_fn`` maps ``x`` to class probabilities (or reconstructions) for the
    test metrics. data: a :class:`~symfuse.nn.data.Split`,
    ``((x_train, y_train), (x_test, y_test))``, ``(x, y)``, or an array of inputs.
    Batches have the training step's static batch size (a remainder is dropped;
    ``batch_size``, if given, must agree), or ``batch_size`` where the step's
    batch is chosen at run time (``zoo.get(..., batch="batch")``); their order is
    shuffled with ``seed``.
    ``augment(x_batch, rng) -> x_batch`` transforms each training batch (e.g.
    :func:`symfuse.nn.data.random_shift`). ``on_epoch_end(record)`` is called with
    each epoch's history entry (e.g. to decay a shared learning rate).

    ``checkpoint`` (a path; ZooModels only) is written after every epoch with
    :func:`save_checkpoint`: variables, optimiser state, the epoch, the shuffling
    generator and the history so far. With ``resume``, an existing checkpoint is
    loaded first and training goes on from the epoch after its own up to
    ``epochs``, exactly as if it had not stopped; the returned history includes the
    earlier epochs.

    Each history entry has ``epoch``, ``time_s`` (training wall time), ``steps``,
    and ``loss``, ``accuracy``, ``test_loss``, ``test_accuracy`` (classifiers) or
    ``recon_error``, ``test_recon_error`` (unsupervised). Train metrics are the
    means over the epoch's steps (a step returning the loss alone gives no
    ``accuracy``); test metrics are computed in eval mode.

    ``distributed`` (data-parallel on MPI, docs/distributed.md): every rank runs
    this with the same arguments; the step must average its gradients (built inside
    ``symfuse.distributed.data_parallel()``). Rank 0's variables are broadcast
    first; the local rank 0 compiles and the host's other ranks then load its
    result; ranks whose compiled step differs are refused. Each step, the ranks
    take consecutive slices of one global batch of ``ranks x batch`` samples drawn
    as a single process with that batch would draw it. Only rank 0 logs, shows
    progress, evaluates and writes the checkpoint; train metrics are averaged over
    the ranks.
    """
    from .zoo import ZooModel
    split = _as_split(data)
    t0 = time.perf_counter()
    part = _distributed_setup(model) if distributed else None
    if part is not None and part[0] != 0:
        verbose, progress, checkpoint_write = False, False, False
    else:
        checkpoint_write = True
    if isinstance(model, ZooModel):
        _check_not_frozen(model)
        if part is not None:
            from .. import distributed as dist
            train_fn = dist.compile_once(lambda: model.train_function(device))
            dist.check_same(dist.fingerprint(train_fn), "compiled training step")
        else:
            train_fn = model.train_function(device)
        compile_s = time.perf_counter() - t0
        test_n = len(split.x_test) if part is None or part[0] == 0 else 0
        # a run-time batch (the model's batch is a name): one predict function serves every eval batch
        pbatch = eval_batch or (model.batch if isinstance(model.batch, str) else
                                min(model.batch, test_n) if test_n else model.batch)
        predict_fn = model.predict_function(device, batch=pbatch) if test_n else None
        unsupervised = model.kind == "rbm"
        names = model.output_names
    else:
        train_fn, predict_fn = (model if isinstance(model, (tuple, list)) else (model, None))
        compile_s = 0.0
        unsupervised = len(train_fn.inputs) == 1
        # a step returning the loss alone has no accuracy to show
        names = (["recon_error"] if unsupervised else ["loss", "accuracy"])[:len(train_fn.outputs)]
    xin = train_fn.inputs[0]
    batch = xin.type.shape[0]
    if type(batch) is not int:      # a run-time batch: the step takes any size, batch_size picks it
        if batch_size is None:
            raise ValueError(f"fit: the training step's batch is chosen at run time ({batch!r}); "
                             "give fit a batch_size")
        batch = int(batch_size)
    elif batch_size is not None and int(batch_size) != batch:
        raise ValueError(f"fit: batch_size={batch_size}, but the training step was compiled for batch {batch}; "
                         f"build the model with batch={batch_size}")
    x_train = _fit_shape(split.x_train, xin.type.shape[1:], xin.dtype.np, "training")
    y_train = None if unsupervised else np.asarray(split.y_train).astype(np.int32, copy=False)
    if not unsupervised and y_train is None:
        raise ValueError("fit: this model needs labels, but the data has none")
    ranks = part[1] if part is not None else 1
    nb = D.num_batches(len(x_train), batch * ranks)
    if nb == 0:
        raise ValueError(f"fit: {len(x_train)} training samples make no full batch of {batch}"
                         + (f" on each of {ranks} ranks" if ranks > 1 else ""))
    history = History()
    history.compile_s = compile_s
    history.report = train_fn.report
    if verbose:
        log(train_fn.report)
        log(f"training {getattr(model, 'name', 'model')} on {device or train_fn.device}: "
            f"{len(x_train)} samples, {nb} steps of {batch} per epoch"
            + (f" on each of {ranks} ranks" if ranks > 1 else "") + f", compiled in {compile_s:.2f} s")
    rng = np.random.default_rng(seed)
    start = _resume(model, checkpoint, resume, rng, history, log if verbose else None)
    for epoch in range(start + 1, epochs + 1):
        rec = _epoch(train_fn, x_train, y_train, batch, names, augment, rng, _bar(nb, f"epoch {epoch}/{epochs}",
                                                                                 progress), part)
        rec["epoch"] = epoch
        if predict_fn is not None and len(split.x_test):
            out = predict(predict_fn, split.x_test)
            if unsupervised:
                xx = _fit_shape(split.x_test, xin.type.shape[1:], np.float64, "test")
                rec["test_recon_error"] = float(np.mean((out.astype(np.float64) - xx) ** 2))
            else:
                rec["test_loss"], rec["test_accuracy"] = classification_metrics(out, np.asarray(split.y_test))
        history.append(rec)
        if checkpoint is not None and checkpoint_write:
            save_checkpoint(checkpoint, model, epoch=epoch, rng=rng, extra={"history": list(history)})
        if on_epoch_end is not None:
            on_epoch_end(rec)
        if verbose:
            log(f"epoch {epoch}/{epochs}  " + "  ".join(
                f"{k} {v:.4f}" for k, v in rec.items() if k not in ("epoch", "time_s", "steps"))
                + f"  ({rec['time_s']:.2f} s)")
    return history


def _check_not_frozen(zm) -> None:
    """A ZooModel's step trains what was trainable when it was built: refuse one that
    would train parameters frozen since."""
    frozen = {id(v): k for k, v in zm.model.named_frozen().items()}
    stale = [frozen[id(s)] for s, _ in zm.updates if id(s) in frozen]
    if stale:
        raise ValueError(f"fit: {stale} were frozen after the {zm.name!r} training step was built, which still "
                         "trains them; build it again after freezing (symfuse.nn.finetune.classifier(model, ...))")


def _resume(model, checkpoint, resume, rng, history, log) -> int:
    """The epoch to go on from: 0, or a loaded checkpoint's (its history appended)."""
    from .zoo import ZooModel
    if checkpoint is None:
        if resume:
            raise ValueError("fit: resume=True needs checkpoint=<path>")
        return 0
    if not isinstance(model, ZooModel):
        raise ValueError("fit: checkpoint= needs a ZooModel (model and optimiser); with compiled functions, call "
                         "save_checkpoint / load_checkpoint yourself")
    if not (resume and os.path.exists(os.fspath(checkpoint))):
        return 0
    info = load_checkpoint(checkpoint, model, rng=rng)
    history.extend(info["extra"].get("history", []))
    if log is not None:
        log(f"resumed from {os.fspath(checkpoint)!r} after epoch {info['epoch']}")
    return int(info["epoch"] or 0)


def _distributed_setup(model):
    """(rank, ranks) of a data-parallel fit, after checking the step and broadcasting rank 0's variables."""
    from .. import distributed as dist
    from .zoo import ZooModel
    if not dist.initialized():
        dist.init()
    if isinstance(model, ZooModel):
        if model.optimizer is None or not model.optimizer.transformed:
            raise ValueError("fit(distributed=True): this model's training step does not average its gradients "
                             "across ranks; build it inside `with symfuse.distributed.data_parallel():`")
        state = list(model.model.named_variables().values()) + list(model.optimizer.state)
        dist.broadcast_values(state)
    return dist.rank(), dist.size()


def _epoch(train_fn, x_train, y_train, batch, names, augment, rng, bar, part=None) -> dict:
    """One pass over the shuffled training data: its wall time, steps and mean metrics.
    ``part`` = (rank, ranks): this rank's slice of each global batch, metrics averaged."""
    dt = train_fn.inputs[0].dtype.np
    sums = np.zeros(len(names))
    steps = 0
    t = time.perf_counter()
    r, ranks = part if part is not None else (0, 1)
    for b in D.minibatches(x_train, y_train, batch * ranks, shuffle=True, seed=rng):
        if ranks > 1:
            b = tuple(v[r * batch:(r + 1) * batch] for v in b) if isinstance(b, tuple) else b[r * batch:(r + 1) * batch]
        if augment is not None:
            xb = np.ascontiguousarray(augment(b[0] if isinstance(b, tuple) else b, rng), dtype=dt)
            b = (xb, b[1]) if isinstance(b, tuple) else xb
        out = train_fn(*(b if isinstance(b, tuple) else (b,)))
        vals = [float(v) for v in (out if isinstance(out, list) else [out])][:len(names)]
        sums[:len(vals)] += vals
        steps += 1
        if bar is not None:
            bar.set_postfix_str(" ".join(f"{n}={v:.4f}" for n, v in zip(names, vals)), refresh=False)
            bar.update(1)
    elapsed = time.perf_counter() - t
    if bar is not None:
        bar.close()
    if ranks > 1:
        from .. import distributed as dist
        sums = dist.communicator().allreduce(sums) / ranks
    rec = {"epoch": 0, "time_s": elapsed, "steps": steps}
    for n, v in zip(names, sums / max(steps, 1)):
        rec[n] = float(v)
    return rec


# --------------------------------------------------------------------------- PNG
def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path, image) -> None:
    """Write a uint8 image (H, W) greyscale or (H, W, 3) RGB as a PNG (zlib + struct,
    no dependencies). Float images are taken as [0, 1] and scaled."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        ctype = 0
    elif a.ndim == 3 and a.shape[2] == 3:
        ctype = 2
    else:
        raise ValueError(f"write_png: expected (H, W) or (H, W, 3), got shape {a.shape}")
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"write_png: empty image {a.shape}")
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
           + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))
    with open(os.fspath(path), "wb") as fh:
        fh.write(png)


def tile_images(samples, shape, ncols: int | None = None, pad: int = 1, scale: int = 1,
                background: float = 0.5) -> np.ndarray:
    """Arrange ``samples`` (n, H*W) or (n, H, W) / (n, 1, H, W) in [0, 1] in a grid
    (float64, ``pad`` pixels of ``background`` between tiles, each tile upscaled by
    the integer ``scale``)."""
    h, w = (int(s) for s in shape)
    s = np.asarray(samples, dtype=np.float64).reshape(-1, h, w)
    n = len(s)
    if n == 0:
        raise ValueError("tile_images: no samples")
    if scale > 1:
        s = s.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), background)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = s[i]
    return grid


def save_samples_png(path, samples, shape, ncols: int | None = None, scale: int | None = None,
                     pad: int = 1) -> np.ndarray:
    """Write a PNG grid of samples (values in [0, 1]; e.g. RBM Gibbs samples) and
    return the grid. ``shape`` is one sample's (H, W); ``scale`` defaults to the
    integer that makes tiles at least 28 pixels."""
    h, w = (int(s) for s in shape)
    if scale is None:
        scale = max(1, 28 // max(h, w))
    grid = tile_images(samples, (h, w), ncols, pad, scale)
    write_png(path, grid)
    return grid


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT_FORMAT = "symfuse-checkpoint"
CHECKPOINT_VERSION = 1


def _checkpoint_parts(model, optimizer):
    """(variables by name, self-advancing counters by name, optimiser) of a Module,
    a ZooModel (its optimiser by default), or a name -> shared dict / an object with
    such a ``params`` dict (an ``sf.onnx`` model)."""
    from ..frontend.api import SharedVariable
    from .module import Module
    from .zoo import ZooModel
    if isinstance(model, ZooModel):
        optimizer = optimizer if optimizer is not None else model.optimizer
        model = model.model
    if isinstance(model, Module):
        return model.named_variables(), model.named_counters(), optimizer
    params = model if isinstance(model, dict) else getattr(model, "params", None)
    if isinstance(params, dict) and all(isinstance(v, SharedVariable) for v in params.values()):
        return dict(params), {}, optimizer
    raise TypeError("checkpoint: model must be a symfuse.nn Module, a ZooModel, a {name: shared variable} dict or "
                    f"a model with such a params dict (an sf.onnx model); got {type(model).__name__}")


def save_checkpoint(path, model, optimizer=None, epoch: int | None = None, rng=None, extra: dict | None = None) -> None:
    """Write a training checkpoint to the ``.npz`` file ``path`` (atomically): every
    variable of ``model`` (frozen parameters and state included), its random
    counters (Dropout's), the optimiser's state (momentum buffers, Adam's moments and
    step count; ``optimizer`` defaults to a ZooModel's), ``epoch``, the state of a
    numpy Generator ``rng`` (the shuffling order) and ``extra`` (JSON-serialisable).
    Arrays and a JSON header only: :func:`load_checkpoint` never unpickles."""
    import json

    from .module import write_npz
    variables, counters, optimizer = _checkpoint_parts(model, optimizer)
    arrays = {f"model/{k}": v.get_value() for k, v in variables.items()}
    arrays.update({f"counter/{k}": v.get_value() for k, v in counters.items()})
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch, "extra": extra or {},
            "rng": rng.bit_generator.state if rng is not None else None, "optimizer": None}
    if optimizer is not None:
        names = {id(v): k for k, v in variables.items()}
        arrays.update({f"optimizer/{k}": a for k, a in optimizer.state_dict(names).items()})
        meta["optimizer"] = {"class": type(optimizer).__name__, "config": optimizer.config()}
    try:
        arrays["meta"] = np.array(json.dumps(meta))
    except TypeError as e:
        raise TypeError(f"save_checkpoint: extra must be JSON-serialisable ({e})") from None
    write_npz(path, arrays, "save_checkpoint")


def load_checkpoint(path, model, optimizer=None, strict: bool = True, rng=None) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` into a freshly built
    ``model`` and ``optimizer`` (build the training step first: the optimiser's
    state exists from then on). Every name, shape and dtype is checked before
    anything changes; with ``strict``, variables, counters or optimiser state on one
    side only, or another optimiser class, are errors. ``rng`` (a numpy Generator)
    is set to the saved one's state. Returns the header: ``epoch``, ``extra``,
    ``optimizer`` (class and hyperparameters) and ``rng``."""
    import json

    from .errors import ModelFileError
    from .module import assign, read_npz, stage
    label = f"load_checkpoint {os.fspath(path)!r}"
    arrays = read_npz(path, "load_checkpoint", "checkpoint")
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
        ok = isinstance(meta, dict) and meta.get("format") == CHECKPOINT_FORMAT
    except (KeyError, ValueError):
        ok = False
    if not ok:
        raise ModelFileError(f"{label}: not a symfuse checkpoint (no header; a file written by Module.save "
                             "is read with model.load)")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ModelFileError(f"{label}: checkpoint format version {meta.get('version')!r}; this symfuse reads "
                             f"version {CHECKPOINT_VERSION}")
    groups = {g: {} for g in ("model", "counter", "optimizer")}
    for k, a in arrays.items():
        group, _, name = k.partition("/")
        if group not in groups:
            raise ModelFileError(f"{label}: unexpected array {k!r} in the checkpoint")
        groups[group][name] = a
    variables, counters, optimizer = _checkpoint_parts(model, optimizer)
    staged = stage(variables, groups["model"], strict, label)
    staged += stage(counters, groups["counter"], strict, label, what="random counter")
    saved_opt = meta.get("optimizer")
    if optimizer is None:
        if strict and saved_opt is not None:
            raise ModelFileError(f"{label}: the checkpoint holds {saved_opt['class']} state; pass the optimiser "
                                 "(optimizer=...) to restore it, or strict=False to leave it out")
    else:
        if saved_opt is None:
            if strict:
                raise ModelFileError(f"{label}: the checkpoint has no optimiser state, but an optimiser was given")
        elif strict and saved_opt["class"] != type(optimizer).__name__:
            raise ModelFileError(f"{label}: the checkpoint holds {saved_opt['class']} state, the optimiser is "
                                 f"{type(optimizer).__name__}")
        else:
            names = {id(v): k for k, v in variables.items()}
            staged += optimizer.stage_state(groups["optimizer"], names, strict, label)
    assign(staged)
    if rng is not None and meta.get("rng") is not None:
        rng.bit_generator.state = meta["rng"]
    return {k: meta.get(k) for k in ("epoch", "extra", "optimizer", "rng")}
