"""The recurrent zoo models train to stated quality: seqdigits (an LSTM reading the
digits row by row) and the character LSTM on the shipped corpus, with sampling."""
import numpy as np

from symfuse.nn import data as D
from symfuse.nn import train, zoo

DEVICE = "cpu"


def test_seqdigits_reaches_95_percent():
    m = zoo.seqdigits(seed=0)
    h = train.fit(m, D.digits(8), epochs=12, device=DEVICE, progress=False, verbose=False)
    assert h[-1]["test_accuracy"] >= 0.95, h[-1]


def test_charlstm_validation_loss_falls_below_2_in_150_steps():
    m = zoo.charlstm(batch=32, steps=32, hidden=128, seed=0)
    corpus = m.corpus
    split = corpus.windows("train", 32, stride=17)
    split.x_train, split.y_train = split.x_train[:150 * 32], split.y_train[:150 * 32]
    before = train.evaluate(m, split.x_test, split.y_test, device=DEVICE)["loss"]
    train.fit(m, split, epochs=1, device=DEVICE, progress=False, verbose=False)
    after = train.evaluate(m, split.x_test, split.y_test, device=DEVICE)["loss"]
    assert before > np.log(corpus.vocab) - 0.5 and after < 2.0, (before, after)
    f = zoo.charlstm_sample_function(m, "And the LORD", 60, temperature=0.7, device=DEVICE)
    a, b, c = f(np.int64(1)), f(np.int64(1)), f(np.int64(2))
    assert a.shape == (60,) and a.dtype == np.int32 and (a == b).all() and (a != c).any()
    assert set(corpus.decode(a)) <= set(corpus.chars)


def test_text_corpus_round_trips_and_windows():
    t = D.text()
    assert 60 <= t.vocab <= 70 and len(t.train) > 90_000
    s = "the fear of the LORD"
    assert t.decode(t.encode(s)) == s
    w = t.windows("train", 16, stride=8)
    assert (w.x_train[:, 1:] == w.y_train[:, :-1]).all() and w.x_train.shape[1] == 16
