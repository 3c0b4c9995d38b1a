"""Golden fusion results (issue 3): the MLP and LeNet-5 training steps (forward,
backward, SGD update of every parameter) at batch 128 fuse into a stated number
of kernels, the same numbers docs/architecture.md gives; the LeNet-5 arena is
within 10 % of its lower bound and at least 2x smaller than naive. A change in
fusion that moves these numbers must update them here and in the docs."""
import numpy as np
import pytest

import symfuse as sf
from test_models_grad import lenet

# kernel counts by kind (library calls: matmul/gemm/conv/pool/softmax family/one_hot; multi: the
# horizontal kernel that runs every other parameter update and the loss)
GOLDEN = {
    "mlp": {"total": 19, "library": 11, "pointwise": 6, "reduce": 1, "multi": 1},
    "lenet": {"total": 28, "library": 18, "pointwise": 8, "reduce": 1, "multi": 1},
}


def mlp(rng, batch, dims=(784, 512, 512, 10)):
    params = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        params += [sf.shared(rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32), name=f"W{i}"),
                   sf.shared(np.zeros(b, np.float32), name=f"b{i}")]
    x = sf.tensor("x", (batch, dims[0]))
    y = sf.tensor("y", (batch,), "int32")
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = sf.relu(h)
    loss = -(sf.one_hot(y, dims[-1]) * sf.log_softmax(h)).sum(axis=1).mean()
    return x, y, loss, params


def train_step(model):
    rng = np.random.default_rng(0)
    x, y, loss, params = mlp(rng, 128) if model == "mlp" else lenet(rng, 128, "float32")
    grads = sf.grad(loss, params)
    return sf.function([x, y], loss, updates=[(p, p - 0.01 * g) for p, g in zip(params, grads)], device="cpu")


@pytest.fixture(scope="module", params=["mlp", "lenet"])
def step(request):
    return request.param, train_step(request.param)


def test_kernel_counts(step):
    model, f = step
    kinds = {}
    for k in f.kernels:
        kinds[k.kind] = kinds.get(k.kind, 0) + 1
    assert {"total": len(f.kernels), **kinds} == GOLDEN[model], [k.name for k in f.kernels]


def test_fusion_patterns(step):
    model, f = step
    names = [k.name for k in f.kernels]
    # softmax-cross-entropy forward is one kernel; no copy kernels for reshapes or transposes
    assert sum("softmax_xent" in n for n in names) == 1
    assert not any(n.endswith(("_reshape", "_transpose")) for n in names), names
    # a dense layer's weight update (W - lr * x.T @ dy) is its gradient's GEMM accumulating into a
    # copy of W (passes/blas.py); every other update is a part of ONE horizontal kernel: the conv
    # weight updates (p - lr * g) and each bias update as the epilogue of its gradient's reduction,
    # plus the loss (also a result)
    n_params = 6 if model == "mlp" else 8
    dense = [p for p in f.shared if p.get_value().ndim == 2]
    assert len(dense) == (3 if model == "mlp" else 2)
    gemms = [n for n in names if n.endswith("_gemm")]
    assert sorted(gemms) == sorted("L_" + "x".join(map(str, p.get_value().shape)) + "_gemm" for p in dense), names
    multi = [k for k in f.kernels if k.kind == "multi"]
    assert len(multi) == 1 and multi[0].name.startswith(f"H_{n_params - len(dense) + 1}x"), names
    param_tags = {"x".join(map(str, p.get_value().shape)) for p in f.shared}
    assert not any(n.startswith(("E_", "R_")) and n.split("_")[1] in param_tags for n in names), names
    assert multi[0].fused_ops.count("sub") == n_params - len(dense)
    assert multi[0].fused_ops.count("sum") == n_params // 2 + 1
    # each activation is fused with its bias add
    act = "relu" if model == "mlp" else "tanh"
    assert sum(f"add_{act}" in n for n in names) == (2 if model == "mlp" else 3)


def test_lenet_memory_plan():
    f = train_step("lenet")
    mem = f.report.info["memory"]
    assert mem["lower_bound_bytes"] <= mem["arena_bytes"] <= 1.10 * mem["lower_bound_bytes"]
    assert mem["arena_bytes"] * 2 <= mem["naive_bytes"], mem
