"""Fine-tune a pretrained LeNet-5 on a few examples of new classes.

The pretrained model (``symfuse/nn/pretrained/lenet_digits04.onnx``, made by
``scripts/make_pretrained_lenet.py``) has only seen the digits 0-4. Here it
learns the digits 5-9 from 20 examples per class: its ONNX graph is imported
with ``sf.onnx.load``, cut before its last layer (the features that fed its
5-way output), its convolutional layers are frozen, and a new 5-way head is
trained with its dense layer. The same architecture trained from scratch on the
same 100 examples, with the same optimiser and the same number of steps, is the
baseline; both are evaluated on the held-out 5-9 test digits.

    .venv/bin/python examples/finetune_digits.py [--epochs 10] [--seeds 3] [--device cpu]
"""
from __future__ import annotations

import argparse

import numpy as np

import symfuse as sf
from symfuse import nn
from symfuse.nn import finetune

BATCH = 20
INPUT_SHAPE = (1, 28, 28)


def few_shot_digits(per_class: int = 20, seed: int = 0) -> nn.data.Split:
    """``per_class`` training digits of each of 5-9 (labels 0-4 = digit - 5), drawn
    with ``seed``, and every held-out test digit 5-9, 28x28 in MNIST framing as
    the pretrained model saw them."""
    data = nn.data.digits(28, box=20)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(data.y_train == c), per_class, replace=False)
                          for c in range(5, 10)])
    rng.shuffle(idx)
    test = data.y_test >= 5
    return nn.data.Split(data.x_train[idx], data.y_train[idx] - 5, data.x_test[test], data.y_test[test] - 5, 5,
                         "digits59")


def optimizer():
    return nn.SGD(0.05, momentum=0.9)        # the zoo's LeNet default, for both models


def finetuned(seed: int = 0) -> nn.ZooModel:
    """The pretrained LeNet cut before its output layer, conv layers frozen, with a new 5-way head."""
    pre = sf.onnx.load(finetune.pretrained("lenet_digits04"), shapes={"x": (BATCH, *INPUT_SHAPE)})
    backbone = finetune.OnnxBackbone(pre, name="backbone")   # x -> the input of the last MatMul (120 features)
    backbone.freeze("conv0", "conv1")
    model = nn.Sequential(backbone, nn.Dense(backbone.features, 5, rng=seed, name="head"), name="finetuned")
    return finetune.classifier(model, INPUT_SHAPE, 5, BATCH, optimizer())


def from_scratch(seed: int = 0) -> nn.ZooModel:
    """The same architecture, randomly initialised."""
    return nn.zoo.lenet(batch=BATCH, classes=5, channels=(6, 16), hidden=120, seed=seed, optimizer=optimizer())


def compare(seed: int, epochs: int, device: str = "cpu") -> tuple[list, list]:
    """Test accuracy after each epoch (5 steps of 20) of the fine-tuned and the from-scratch model."""
    split = few_shot_digits(seed=seed)
    curves = []
    for build in (finetuned, from_scratch):
        hist = nn.fit(build(seed), split, epochs=epochs, device=device, progress=False, verbose=False, seed=seed)
        curves.append(hist.metric("test_accuracy"))
    return curves[0], curves[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    zm = finetuned(0)
    print(zm.model.summary())
    print(f"\ntest accuracy on the held-out digits 5-9 after each epoch (5 steps of {BATCH} examples)")
    ft_all, sc_all = [], []
    for seed in range(args.seeds):
        ft, sc = compare(seed, args.epochs, args.device)
        ft_all.append(ft), sc_all.append(sc)
        print(f"seed {seed}  fine-tuned   " + " ".join(f"{a:.3f}" for a in ft))
        print("        from scratch " + " ".join(f"{a:.3f}" for a in sc))
    ft_mean, sc_mean = np.mean(ft_all, axis=0), np.mean(sc_all, axis=0)
    print("mean    fine-tuned   " + " ".join(f"{a:.3f}" for a in ft_mean))
    print("        from scratch " + " ".join(f"{a:.3f}" for a in sc_mean))


if __name__ == "__main__":
    main()
