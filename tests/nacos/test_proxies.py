"""nacos.proxies and nacos.predictor: proxies compute what their papers define; predictors rank what they learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ir import GraphBuilder, verify
from nacos import predictor, proxies, spaces
from nacos.proxies import rank_quality


def two_layer(w1: np.ndarray, w2: np.ndarray, act: str = "relu", **attrs):
    b = GraphBuilder("two_layer")
    x = b.input("x", (1, w1.shape[1]))
    h = b.op(act, b.op("dense", x, b.constant(w1, "w1")), **attrs)
    return verify(b.build([b.op("dense", h, b.constant(w2, "w2"))]))


def test_synflow_matches_the_closed_form():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    # with |θ| and an all-ones input R = 1ᵀ|W2||W1|1, and each layer's Σ|θ ⊙ ∂R/∂θ| equals R
    r = np.ones(3) @ np.abs(w2).astype(np.float64) @ np.abs(w1).astype(np.float64) @ np.ones(4)
    assert proxies.create("synflow").score(two_layer(w1, w2)) == pytest.approx(math.log10(2 * r), rel=1e-9)
    # layernorm counts as its affine part (scale 1, bias 0): R is unchanged and the scale, a weight too, adds R
    b = GraphBuilder("with_ln")
    h = b.op("dense", b.input("x", (1, 4)), b.constant(w1, "w1"))
    h = b.op("layernorm", h, b.constant(np.ones(5, np.float32), "s"), b.constant(np.zeros(5, np.float32), "b"),
             axis=1)
    with_ln = verify(b.build([b.op("dense", b.op("relu", h), b.constant(w2, "w2"))]))
    assert proxies.create("synflow").score(with_ln) == pytest.approx(math.log10(3 * r), rel=1e-9)
    # relu6 is scored as relu (on |θ| weights every unit exceeds 6 here, and a clip would zero the W1 term)
    relu6 = two_layer(w1 * 100, w2, act="clip", min=0.0, max=6.0)
    assert proxies.create("synflow").score(relu6) == pytest.approx(math.log10(2 * 100 * r), rel=1e-6)


def test_naswot_separates_distinct_inputs():
    rng = np.random.default_rng(0)
    graph = two_layer(rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(2, 64)).astype(np.float32))
    x = rng.normal(size=(16, 1, 8)).astype(np.float32)
    distinct = proxies.create("naswot").score(graph, x)
    assert np.isfinite(distinct)
    # identical examples share one code: K is rank one, its log-det −∞
    assert proxies.create("naswot").score(graph, np.repeat(x[:1], 16, axis=0)) == float("-inf")
    # a wider layer gives more distinct codes than a very narrow one
    narrow = two_layer(rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32))
    assert proxies.create("naswot").score(narrow, x) < distinct
    with pytest.raises(ValueError, match="needs a minibatch"):
        proxies.create("naswot").score(graph)


def test_proxies_score_space_samples():
    space = spaces.create("hyt")
    x = np.random.default_rng(0).normal(size=(8, 1, 16, 16)).astype(np.float32)
    graph = space.to_graph(space.sample(np.random.default_rng(1)), (1, 1, 16, 16))
    for kind in proxies.available():
        assert np.isfinite(proxies.create(kind).score(graph, x)), kind
    with pytest.raises(ValueError, match="unknown proxy 'zen'; available: flops, naswot, params, synflow"):
        proxies.create("zen")


def test_rank_quality():
    assert rank_quality([1, 2, 3, 4], [10, 20, 30, 40]).tau == pytest.approx(1.0)
    assert rank_quality([4, 3, 2, 1], [10, 20, 30, 40]).tau == pytest.approx(-1.0)
    assert rank_quality([1, 1, 1, 1], [1, 2, 3, 4]).tau == 0.0
    q = rank_quality([1, 2, float("-inf"), 4], [1, 2, 3, 4])  # a −∞ score is dropped, not ranked
    assert q.n == 3 and q.tau == pytest.approx(1.0)


def _synthetic(space_name: str, n: int, seed: int = 0):
    """Encodings of sampled archs and an accuracy that depends on a few of their variables, plus noise."""
    space = spaces.create(space_name)
    rng = np.random.default_rng(seed)
    enc = np.stack([space.encode(space.sample(rng)) for _ in range(n)])
    acc = 0.8 + 0.05 * enc[:, :6].sum(1) - 0.03 * enc[:, -3] + rng.normal(0, 0.005, n)
    return enc, acc


@pytest.mark.parametrize("kind", ["xgb", "ridge"])
def test_predictor_learns_a_ranking(kind):
    enc, acc = _synthetic("mbv2", 60)
    cv = predictor.cross_validate(kind, enc, acc, folds=5)
    assert cv.quality.tau >= 0.6 and cv.quality.n == 60 and len(cv.predictions) == 60


def test_predictor_update_predict_save_load(tmp_path):
    enc, acc = _synthetic("hyt", 30)
    model = predictor.create("xgb")
    assert np.all(model.predict(enc[:3]) == 0.0)  # warm-up: nothing learned yet
    model.update(enc[:2], acc[:2])
    assert np.allclose(model.predict(enc[:3]), acc[:2].mean())  # still below min_samples: the mean
    model.update(enc[2:], acc[2:])
    pred = model.predict(enc)
    assert pred.shape == (30,) and rank_quality(pred, acc).tau > 0.6
    model.save(tmp_path / "pred.npz")
    again = predictor.create("xgb").load(tmp_path / "pred.npz")
    np.testing.assert_allclose(again.predict(enc), pred, rtol=1e-6)
    with pytest.raises(ValueError, match="encodings have length"):
        model.update(enc[:1, :5], acc[:1])
    with pytest.raises(ValueError, match="unknown predictor"):
        predictor.create("gp")


def test_cross_validation_needs_two_to_n_folds_and_a_predictor_saves_where_it_is_told(tmp_path):
    # folds=1 fitted on nothing (τ 0); more folds than points left one empty (sklearn's traceback); save("p")
    # wrote p.npz, so load("p") failed; a ridge file loaded into an xgb predictor
    rng = np.random.default_rng(0)
    enc, acc = rng.random((4, 3)), rng.random(4)
    for folds in (1, 5):
        with pytest.raises(ValueError, match=f"folds={folds}"):
            predictor.cross_validate("ridge", enc, acc, folds=folds)
    model = predictor.create("ridge").update(enc, acc)
    model.save(tmp_path / "p")
    again = predictor.create("ridge").load(tmp_path / "p")
    np.testing.assert_allclose(again.predict(enc), model.predict(enc))
    with pytest.raises(ValueError, match="'ridge' predictor's points"):
        predictor.create("xgb").load(tmp_path / "p")


def test_naswot_scores_a_fixed_batch_graph_as_its_batch_1_twin():
    # a graph built for batch 4 (train accepts those) failed with a reshape error, and examples of another
    # size gave a torch traceback
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(2, 64)).astype(np.float32)

    def graph(batch):
        b = GraphBuilder(f"batch{batch}")
        h = b.op("relu", b.op("dense", b.input("x", (batch, 8)), b.constant(w1, "w1")))
        return verify(b.build([b.op("dense", h, b.constant(w2, "w2"))]))

    x = rng.normal(size=(10, 8)).astype(np.float32)  # 10: the last batch of 4 is padded
    one = proxies.naswot(graph(1), x)
    assert np.isfinite(one) and proxies.naswot(graph(4), x) == pytest.approx(one, rel=1e-9)
    with pytest.raises(ValueError, match=r"takes inputs \[1, 8\], and the examples are \[9\]"):
        proxies.naswot(graph(1), rng.normal(size=(10, 9)).astype(np.float32))
