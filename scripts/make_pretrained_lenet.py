"""Make symfuse/nn/pretrained/lenet_digits04.onnx: LeNet-5 pretrained on digits 0-4.

    .venv/bin/python scripts/make_pretrained_lenet.py [--epochs 40] [--shift 2] [--out PATH]

Trains the zoo's LeNet (``symfuse.nn.zoo.lenet``) with LeNet-5's widths (conv 6
5x5, conv 16 5x5, dense 120; 34k parameters, a 138 KB file) on the training
digits 0-4 of the shipped digits set, 28x28 in MNIST framing
(``nn.data.digits(28, box=20)``), with random shifts of up to 2 pixels, for 40
epochs, and writes its inference function
``x (N, 1, 28, 28) -> probs (N, 5)`` with ``sf.onnx.save``. symfuse compiles
static shapes, so the function is exported at batch 2 and the file's batch axis
is then made symbolic (the input, the output and the Reshape that flattens the
features): the file takes any batch, in symfuse (``sf.onnx.load(path,
shapes={"x": (B, 1, 28, 28)})``) and in onnxruntime. The script checks the file
against symfuse's own predictions (and onnxruntime's, where installed) before it
writes it. Deterministic for a given machine and seed (seconds on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import symfuse as sf  # noqa: E402
from symfuse import nn  # noqa: E402

OUT = os.path.join(ROOT, "symfuse", "nn", "pretrained", "lenet_digits04.onnx")
ARCH = dict(channels=(6, 16), hidden=120, classes=5)
EXPORT_BATCH = 2        # any batch > 1: the flattening Reshape is the one non-weight reshape starting with it


def digits04(seed: int = 0):
    """The shipped digits at 28x28 (MNIST framing), classes 0-4 only."""
    data = nn.data.digits(28, box=20, seed=seed)
    tr, te = data.y_train < 5, data.y_test < 5
    return nn.data.Split(data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te], 5, "digits04")


def symbolic_batch(model, batch: int, name: str = "N"):
    """Make axis 0 of the graph's inputs and outputs the symbolic ``name`` and the
    Reshape targets that start with ``batch`` (of a computed value, not a weight)
    start with -1 instead."""
    import onnx
    from onnx import numpy_helper
    g = model.graph
    for vi in list(g.input) + list(g.output):
        d = vi.type.tensor_type.shape.dim[0]
        if d.dim_value != batch:
            raise RuntimeError(f"{vi.name}: batch axis {d} is not {batch}")
        d.dim_param = name
    weights = {t.name for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    rewritten = 0
    for n in g.node:
        if n.op_type != "Reshape" or n.input[0] in weights:
            continue
        const = consts.get(n.input[1])
        if const is None or uses[n.input[1]] != 1:
            raise RuntimeError(f"Reshape {n.name}: its shape is not a Constant used by it alone")
        attr = next(a for a in const.attribute if a.name == "value")
        shape = numpy_helper.to_array(attr.t).copy()
        if shape[0] != batch:
            raise RuntimeError(f"Reshape {n.name}: target {shape} does not start with the batch {batch}")
        shape[0] = -1
        attr.t.CopyFrom(numpy_helper.from_array(shape, attr.t.name))
        rewritten += 1
    if rewritten != 1:
        raise RuntimeError(f"expected exactly one flattening Reshape, rewrote {rewritten}")
    del g.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shift", type=int, default=2, help="augment: random shifts of up to this many pixels")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    import onnx

    data = digits04()
    zm = nn.zoo.lenet(batch=50, seed=args.seed, **ARCH)
    augment = (lambda xb, rng: nn.data.random_shift(xb, args.shift, rng)) if args.shift else None
    hist = nn.fit(zm, data, epochs=args.epochs, device=args.device, progress=False, verbose=False, seed=args.seed,
                  augment=augment)
    acc = hist[-1]["test_accuracy"]
    print(f"trained {args.epochs} epochs on {len(data.x_train)} digits 0-4: test accuracy {acc:.4f} "
          f"({len(data.x_test)} test digits)")

    f = zm.predict_function("interp", batch=EXPORT_BATCH)
    model = sf.onnx.save(f, None, output_names=["probs"],
                         doc_string="LeNet-5 (conv 6, conv 16, dense 120) trained by symfuse on the digits 0-4 "
                                    "(28x28, MNIST framing); input x (N, 1, 28, 28) in [0, 1], output probs (N, 5). "
                                    "Made by scripts/make_pretrained_lenet.py.")
    if model.graph.input[0].name != "x":
        raise RuntimeError(f"expected the input to be named 'x', got {model.graph.input[0].name!r}")
    symbolic_batch(model, EXPORT_BATCH)
    onnx.helper.set_model_props(model, {"classes": "0,1,2,3,4", "test_accuracy": f"{acc:.4f}",
                                        "epochs": str(args.epochs), "seed": str(args.seed),
                                        "data": "symfuse.nn.data.digits(28, box=20), labels < 5"})

    # the file must give symfuse's own predictions, at a batch other than the exported one
    want = nn.train.predict(zm.predict_function(args.device, batch=50), data.x_test)
    x7 = data.x_test[:7]
    got = sf.onnx.load(model, shapes={"x": x7.shape}).run(x7, device="interp")[0]
    np.testing.assert_allclose(got, want[:7], rtol=1e-4, atol=1e-5)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"x": data.x_test})[0], want, rtol=1e-4, atol=1e-5)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    onnx.save_model(model, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {zm.model.num_params()} parameters); checked "
          f"against symfuse" + (" and onnxruntime" if ort is not None else ""))


if __name__ == "__main__":
    main()
