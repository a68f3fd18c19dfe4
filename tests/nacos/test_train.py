"""nacos.train: IR graphs train to real accuracy on digits; weights go back into graphs; distillation runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ir import GraphBuilder, verify
from nacos import data
from nacos.train import TrainConfig, evaluate, train, with_weights


def small_cnn(seed: int = 0, channels: int = 16, shape=(1, 1, 16, 16)):
    """conv-relu-maxpool ×2 → flatten → dense: ~13k parameters, built directly with the GraphBuilder."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("small_cnn")
    x = b.input("x", shape)

    def he(*s):
        return b.constant((rng.normal(0, 1, s) * math.sqrt(2 / np.prod(s[1:]))).astype(np.float32), "w")

    def zeros(n):
        return b.constant(np.zeros(n, np.float32), "b")

    h = x
    for cin, cout in ((1, channels), (channels, 2 * channels)):
        h = b.op("relu", b.op("conv", h, he(cout, cin, 3, 3), zeros(cout), strides=(1, 1), pads=(1, 1, 1, 1)))
        h = b.op("maxpool", h, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))
    h = b.op("flatten", h, axis=1)
    y = b.op("dense", h, he(10, b.type_of(h).shape[1]), zeros(10))
    return verify(b.build([y]))


def mlp(seed: int = 0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("mlp")
    x = b.op("flatten", b.input("x", (1, 1, 16, 16)), axis=1)
    w1 = b.constant((rng.normal(0, 1, (32, 256)) / 16).astype(np.float32), "w1")
    w2 = b.constant((rng.normal(0, 1, (10, 32)) / 6).astype(np.float32), "w2")
    return verify(b.build([b.op("dense", b.op("relu", b.op("dense", x, w1)), w2)]))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def trained(digits):
    graph = small_cnn()
    return graph, train(graph, digits, TrainConfig(epochs=3, progress=False))


def test_small_cnn_reaches_90_percent_on_digits(trained, digits):
    graph, res = trained
    assert res.test_accuracy >= 0.9, res
    assert res.val_accuracy == max(res.val_accuracies)  # the best epoch's weights are the ones kept
    assert res.steps == res.epochs * math.ceil(len(digits.train) / 32)
    assert len(res.losses) == res.epochs and res.losses[-1] < res.losses[0]
    assert res.seconds > 0


def test_trained_weights_go_back_into_a_graph(trained, digits):
    graph, res = trained
    new = res.apply(graph)
    verify(new)
    assert new.structural_hash() == graph.structural_hash() and new.weights_hash() != graph.weights_hash()
    acc, _ = evaluate(new, digits.test)
    assert acc == pytest.approx(res.test_accuracy)
    # the input graph is unchanged: still its random-init accuracy
    assert evaluate(graph, digits.test)[0] < 0.5
    with pytest.raises(ValueError, match="shape"):
        with_weights(graph, {graph.compute_nodes[0].inputs[1]: np.zeros((1, 1), np.float32)})


def test_seeded_and_thread_count_restored(digits):
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, max_steps=8, progress=False)
    a, b = train(small_cnn(), digits, cfg), train(small_cnn(), digits, cfg)
    assert a.steps == 8 and a.losses == b.losses
    c = train(small_cnn(), digits, cfg, seed=1, threads=2)
    assert c.losses != a.losses
    assert torch.get_num_threads() == 1  # training's own thread count does not leak out


def test_early_stopping_and_progress_bar(digits):
    # lr 0 never improves on the first epoch's val accuracy: patience 1 stops after epoch 2
    res = train(mlp(), digits, epochs=6, lr=0.0, patience=1, progress=True)
    assert res.epochs == 2 and res.best_epoch == 0


def test_distillation_from_a_teacher(trained, digits):
    graph, res = trained
    teacher = res.apply(graph)
    student = train(mlp(), digits, TrainConfig(epochs=2, progress=False, distill_alpha=0.7), teacher=teacher)
    assert student.test_accuracy > 0.8 and np.isfinite(student.losses).all()


def test_batch_n_graph_trains_in_fixed_batches(digits):
    res = train(small_cnn(shape=(16, 1, 16, 16)), digits, epochs=1, max_steps=5, progress=False)
    assert res.steps == 5 and 0.0 <= res.test_accuracy <= 1.0


def test_a_graph_that_does_not_fit_the_data_is_refused_before_training(digits):
    # a 24×24 graph trained on 16×16 digits ran at 16×16 (convolutions and pools take any size) and reported that
    # network's accuracy; a fixed batch larger than the training split ran no step and reported the untrained model;
    # epochs=0 reported val_accuracy -1.0
    from nacos.data import Dataset

    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"takes inputs \[1, 1, 24, 24\].*examples are \[1, 16, 16\]"):
        train(small_cnn(shape=(1, 1, 24, 24)), digits, cfg)
    with pytest.raises(ValueError, match=r"takes inputs"):
        evaluate(small_cnn(shape=(1, 1, 24, 24)), digits.test)
    with pytest.raises(ValueError, match=r"fixed batch of 2048, larger than"):
        train(small_cnn(shape=(2048, 1, 16, 16)), digits, cfg)
    three = Dataset("three", digits.train, digits.val, digits.test, digits.classes[:3])
    with pytest.raises(ValueError, match="gives 10 outputs, and three has 3 classes"):
        train(small_cnn(), three, cfg)
    for bad in ({"epochs": 0}, {"max_steps": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            train(small_cnn(), digits, cfg, **bad)
