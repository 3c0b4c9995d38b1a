"""symfuse.nn: layers, losses, initialisers, optimisers, data, a model zoo and a
training loop on top of the symbolic API::

    import symfuse as sf
    from symfuse import nn

    model = nn.Sequential(nn.Flatten(), nn.Dense(64, 128, "relu"), nn.Dense(128, 10))
    x, y = sf.tensor("x", (32, 1, 8, 8)), sf.tensor("y", (32,), "int32")
    logits = model(x, train=True)
    loss = nn.losses.softmax_cross_entropy(logits, y)
    step = sf.function([x, y], loss,
                       updates=nn.optim.Adam(1e-3).updates(loss, model.params) + model.updates)

The digits data ships with symfuse; progress bars use tqdm (a dependency).
"""
from . import data, finetune, init, losses, optim, train, zoo  # noqa: F401
from .errors import DataError, MissingDependencyError, ModelFileError, UnknownModelError  # noqa: F401
from .layers import (  # noqa: F401
    ACTIVATIONS, Activation, AvgPool2D, BatchNorm, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
    Lambda, LeakyReLU, LogSoftmax, MaxPool2D, Model, Module, ReLU, Sequential, Sigmoid, Softmax, Tanh,
    get_activation, leaky_relu, linear, log_softmax, relu, sigmoid, softmax, softplus, tanh,
)
from .recurrent import GRU, LSTM, RNN, Embedding  # noqa: F401
from .optim import SGD, Adam, AdamW, RMSProp  # noqa: F401
from .train import (  # noqa: F401
    History, evaluate, fit, load_checkpoint, predict, save_checkpoint, save_samples_png, write_png,
)
from .zoo import ZOO, ZooModel  # noqa: F401
