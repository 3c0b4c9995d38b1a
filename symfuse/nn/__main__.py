"""Train a zoo model from the command line::

    python -m symfuse.nn lenet --epochs 15              # LeNet-5 on the digits (28x28, MNIST framing)
    python -m symfuse.nn mlp --data mnist:/data/mnist   # MLP 784-512-512-10 on MNIST IDX files
    python -m symfuse.nn rbm --samples rbm.png          # RBM on the 8x8 digits, then a PNG of samples
    python -m symfuse.nn lenet --save lenet.npz         # save the trained weights
    python -m symfuse.nn seqdigits                      # an LSTM reading the 8x8 digits row by row
    python -m symfuse.nn charlstm --epochs 3            # a character LSTM on the shipped text, with samples

Data: ``digits`` (the 8x8 digits shipped with symfuse; 28x28 for LeNet), ``mnist:DIR`` or
``synthetic``; for ``charlstm``, ``text`` (the shipped corpus) or ``text:FILE``. Prints the compile report, a progress bar and one line per epoch.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from ..errors import InputError, SymfuseError
from . import data as D
from . import optim, train, zoo


def _load(spec: str, model: str):
    if model == "charlstm":
        if spec in ("digits", "text"):
            return D.text()
        if spec.startswith("text:"):
            return D.text(spec[len("text:"):])
        raise InputError(f"unknown --data {spec!r} for charlstm: use text or text:FILE")
    size = 28 if model == "lenet" else 8
    if spec == "digits":
        return D.digits(size=size, box=20 if size == 28 else None)
    if spec.startswith("mnist:"):
        return D.mnist(spec[len("mnist:"):])
    if spec == "synthetic":
        shape = (1, 28, 28) if model != "rbm" else (784,)
        x, y = D.synthetic(2048, shape, 10, seed=0)
        return D.split(x, y, 0.2, seed=0, name="synthetic")
    raise InputError(f"unknown --data {spec!r}: use digits, mnist:DIR or synthetic")


def _positive_lr(text: str) -> float:
    try:
        lr = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not lr > 0:      # not lr > 0: NaN too
        raise argparse.ArgumentTypeError(f"the learning rate must be > 0, not {text}")
    return lr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m symfuse.nn", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(zoo.ZOO))
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--lr", type=_positive_lr, default=None)
    ap.add_argument("--optimizer", default=None, choices=sorted(optim.OPTIMIZERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--save", default=None, help="write the trained weights to this .npz file")
    ap.add_argument("--load", default=None, help="start from the weights in this .npz file")
    ap.add_argument("--samples", default=None, help="rbm: write a PNG of Gibbs samples here")
    ap.add_argument("--distributed", action="store_true",
                    help="one rank of a data-parallel job (under mpiexec): --batch is the global batch")
    a = ap.parse_args(argv)
    if a.samples and a.model != "rbm":      # before training, not after it
        ap.error(f"--samples is for the rbm, not {a.model}")

    if a.model == "charlstm":
        return _train_charlstm(a, _load(a.data, a.model))
    split = _load(a.data, a.model)
    per_sample = split.x_train.shape[1:]
    kw: dict = {"seed": a.seed}
    if a.batch:
        kw["batch"] = a.batch
    if a.optimizer or a.lr is not None:
        name = a.optimizer or "sgd"
        okw = {"lr": a.lr} if a.lr is not None else {}
        if name == "sgd" and a.model != "rbm":
            okw["momentum"] = 0.9
        kw["optimizer"] = optim.get(name, **okw)
    if a.model == "mlp":
        kw.update(dims=(math.prod(per_sample), 512, 512, split.classes or 10), input_shape=per_sample)
    elif a.model == "lenet":
        kw.update(input_shape=per_sample, classes=split.classes or 10)
    elif a.model == "seqdigits":
        kw.update(rows=per_sample[-1])
    else:
        kw.update(n_visible=math.prod(per_sample), n_hidden=500 if math.prod(per_sample) > 100 else 64)
    lr_var, augment = None, None
    if a.model == "lenet" and not (a.optimizer or a.lr is not None):
        # the recipe of tests/nn/test_zoo.py (~98 % on the digits): momentum, light weight
        # decay, a per-epoch learning-rate decay and +-2 pixel random shifts, batch 50
        from ..frontend.api import shared
        lr_var = shared(np.float32(0.05), name="lr")
        kw["optimizer"] = optim.SGD(lr_var, momentum=0.9, weight_decay=5e-4)
        kw.setdefault("batch", 50)
        augment = lambda xb, rng: D.random_shift(xb, 2, rng)  # noqa: E731
    lead = True
    if a.distributed:
        from .. import distributed as dist
        dist.init()
        lead = dist.rank() == 0
        ranks = dist.size()
        import inspect
        glob = kw.get("batch") or inspect.signature(zoo.ZOO[a.model]).parameters["batch"].default
        if glob % ranks:
            raise InputError(f"--batch {glob} (the global batch) is not divisible by the {ranks} workers")
        kw["batch"] = glob // ranks
        with dist.data_parallel():
            m = zoo.get(a.model, **kw)
    else:
        m = zoo.get(a.model, **kw)
    if a.load:
        m.model.load(a.load)
    decay = (lambda rec: lr_var.set_value(lr_var.get_value() * 0.88)) if lr_var is not None else None
    _fit_saving_on_interrupt(m, a, lead, split, epochs=a.epochs, device=a.device, progress=not a.no_progress,
                             seed=a.seed, augment=augment, on_epoch_end=decay, distributed=a.distributed)
    if not lead:
        return 0
    if a.save:
        m.model.save(a.save)
        print(f"saved {len(m.model.named_variables())} variables to {a.save}")
    if a.samples:
        side = int(math.isqrt(m.model.n_visible))
        f = zoo.rbm_sample_function(m, 64, steps=100, device=a.device)
        start = split.x_test[:64].reshape(-1, m.model.n_visible).astype(np.float32)
        if len(start) < 64:
            start = np.resize(start, (64, m.model.n_visible))
        train.save_samples_png(a.samples, f(start), (side, side), ncols=8)
        # the full path: the default file lands in the current directory, unasked
        print(f"wrote 64 samples after 100 Gibbs steps to {os.path.abspath(a.samples)}")
    return 0


def _fit_saving_on_interrupt(m, a, lead: bool, split, on_epoch_end=None, **kw) -> None:
    """train.fit; on Ctrl-C with --save, the weights of the last completed epoch are
    saved (mid-epoch weights are half an update pass: not a state worth keeping)."""
    last = {}

    def epoch_end(rec):
        if on_epoch_end is not None:
            on_epoch_end(rec)
        if a.save and lead:
            last.update(epoch=rec["epoch"], weights=m.model.get_weights())
    try:
        train.fit(m, split, on_epoch_end=epoch_end, **kw)
    except KeyboardInterrupt:
        if a.save and lead:
            if last:
                from .module import write_npz
                write_npz(a.save, last["weights"], "save")
                print(f"\ninterrupted: saved the weights after epoch {last['epoch']} to {a.save}", file=sys.stderr)
            else:
                print(f"\ninterrupted before the first epoch ended: nothing saved to {a.save}", file=sys.stderr)
        raise


def _train_charlstm(a, corpus) -> int:
    """Train the character LSTM on windows of the corpus, printing a sample after each epoch."""
    kw: dict = {"seed": a.seed, "corpus": None if a.data in ("digits", "text") else a.data[len("text:"):]}
    if a.batch:
        kw["batch"] = a.batch
    if a.optimizer or a.lr is not None:
        kw["optimizer"] = optim.get(a.optimizer or "adam", **({"lr": a.lr} if a.lr is not None else {}))
    m = zoo.get("charlstm", **kw)
    if a.load:
        m.model.load(a.load)
    steps = m.input_shape[0]
    split = corpus.windows("train", steps, stride=steps // 2 + 1)
    sampler = zoo.charlstm_sample_function(m, corpus.decode(corpus.valid[:24]), 160, temperature=0.8,
                                           device=a.device)

    def show(rec):
        text = corpus.decode(sampler(np.int64(a.seed * 1000 + rec["epoch"])))
        print(f"sample after epoch {rec['epoch']}: {text!r}")
    _fit_saving_on_interrupt(m, a, True, split, epochs=a.epochs, device=a.device, progress=not a.no_progress,
                             seed=a.seed, on_epoch_end=show)
    if a.save:
        m.model.save(a.save)
        print(f"saved {len(m.model.named_variables())} variables to {a.save}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SymfuseError as e:
        print(f"symfuse: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:      # the ranks of `symfuse train --workers N` too: no traceback each
        sys.exit(130)
