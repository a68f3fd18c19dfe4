"""nacos.spaces: every sample is a valid, trainable, compilable graph; variation never alters its inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir import verify
from ir.analysis import graph_cost
from ir.exporters import to_torch
from nacos import spaces

SPACES = ["hyt", "mbv2", "resnet"]
# small archs that still exercise each space's distinctive ops, for the compile check (kept fast)
COMPILE_ARCHS = {
    "hyt": dict(s3_block="attn2", patch=2),           # MobileViT unfolding + 2-head attention at 4×4
    "mbv2": dict(s2_kernel=5, s2_expand=6),
    "resnet": dict(stages=2, s2_type="bottleneck", s2_branches=2),
}


def test_registry():
    assert spaces.available() == SPACES
    with pytest.raises(ValueError, match="unknown search space 'nope'; available: hyt, mbv2, resnet"):
        spaces.create("nope")
    space = spaces.create("hyt", width_mult=2)
    assert spaces.create(space) is space


def test_hyt_variables():
    space = spaces.create("hyt")
    names = [v.name for v in space.variables()]
    assert 20 <= len(names) <= 25 and len(set(names)) == len(names)
    blocks = space.variables()[names.index("s3_block")].choices
    assert {"mbconv3", "attn1"} <= set(blocks)
    assert all(v["kind"] in ("choice", "ordinal") and v["choices"] for v in space.describe())


@pytest.mark.parametrize("name", SPACES)
def test_samples_verify_and_run_in_torch(name):
    space = spaces.create(name)
    rng = np.random.default_rng(0)
    length = len(space.encode(space.sample(np.random.default_rng(9))))
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 16, 16)).astype(np.float32))
    for i in range(3):
        arch = space.sample(rng)
        graph = verify(space.to_graph(arch, (1, 1, 16, 16), num_classes=10, seed=0))
        assert graph.output_types()[0].shape == (1, 10)
        assert graph_cost(graph).params <= 250_000  # digits models stay small
        assert space.encode(arch).shape == (length,) and space.encode(arch).dtype == np.float32
        with torch.no_grad():
            y = to_torch(graph)(x)
        assert y.shape == (1, 10) and torch.isfinite(y).all()
        if i == 0:  # seeded weights: the same seed gives the same graph, another seed other weights
            again = space.to_graph(arch, (1, 1, 16, 16), num_classes=10, seed=0)
            assert again.weights_hash() == graph.weights_hash()
            assert space.to_graph(arch, (1, 1, 16, 16), 10, seed=1).weights_hash() != graph.weights_hash()


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_mutate_and_crossover_give_valid_new_archs(name, seed):
    space = spaces.create(name)
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    a_values, b_values = a.values, b.values
    m = space.mutate(a, rng)
    c = space.crossover(a, b, rng)
    assert a.values == a_values and b.values == b_values  # inputs untouched
    assert m.archid != a.archid
    assert hash(m) == hash(space.make(m.as_dict()))  # frozen, hashable, canonical
    for child in (m, c):
        assert space.canonical(child.as_dict()) == child
        verify(space.to_graph(child, (1, 1, 16, 16)))
    assert space.from_indices(space.indices(c)) == c


@pytest.mark.parametrize("name", SPACES)
def test_archid_is_stable_and_inactive_variables_do_not_count(name):
    space = spaces.create(name)
    arch = space.sample(np.random.default_rng(3))
    assert arch.archid == space.make(arch.as_dict()).archid and arch.archid.startswith(name + "-")
    with pytest.raises(ValueError, match="is not one of"):
        space.make({space.variables()[0].name: -1})


def test_inactive_variables_are_canonical():
    hyt = spaces.create("hyt")
    conv_only = {f"s{s}_block": "mbconv3" for s in range(1, 6)}
    assert hyt.make(conv_only, patch=1) == hyt.make(conv_only, patch=2)  # no attention: patch is moot
    resnet = spaces.create("resnet")
    assert resnet.make(stages=1, s3_blocks=1) == resnet.make(stages=1, s3_blocks=2)
    assert resnet.make(stages=3, s3_blocks=1) != resnet.make(stages=3, s3_blocks=2)


@pytest.mark.parametrize("shape", [(1, 1, 28, 28), (1, 3, 32, 32), (1, 3, 224, 224)])
def test_hyt_builds_at_other_input_sizes(shape):
    space = spaces.create("hyt")
    # every stage but the first as attention, 4 heads, patch 2: the most shape-sensitive arch
    arch = space.make({f"s{s}_block": "attn4" for s in range(2, 6)}, patch=2)
    graph = verify(space.to_graph(arch, shape, num_classes=7))
    assert graph.output_types()[0].shape == (1, 7)
    if shape[-1] <= 32:
        with torch.no_grad():
            assert to_torch(graph)(torch.randn(*shape)).shape == (1, 7)
    for name in ("mbv2", "resnet"):
        other = spaces.create(name)
        verify(other.to_graph(other.sample(np.random.default_rng(0)), shape))


@pytest.mark.parametrize("name", SPACES)
def test_one_sample_compiles_and_matches_torch(name):
    import nacos

    space = spaces.create(name)
    graph = space.to_graph(space.make(COMPILE_ARCHS[name]), (1, 1, 16, 16), num_classes=10, seed=0)
    x = np.random.default_rng(2).normal(size=(1, 1, 16, 16)).astype(np.float32)
    (got,) = nacos.compile(graph)(x)
    with torch.no_grad():
        want = to_torch(graph)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPACES)
def test_random_sample_compiles_and_matches_torch(name):
    import nacos

    space = spaces.create(name)
    graph = space.to_graph(space.sample(np.random.default_rng(5)), (1, 1, 16, 16), num_classes=10, seed=0)
    x = np.random.default_rng(2).normal(size=(1, 1, 16, 16)).astype(np.float32)
    (got,) = nacos.compile(graph)(x)
    with torch.no_grad():
        want = to_torch(graph)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_digits():
    """A slice of digits: enough for a few steps, small enough that evaluation costs nothing."""
    from nacos.data import Dataset, Split, load

    d = load("digits")
    cut = lambda s, n: Split(s.x[:n], s.y[:n])  # noqa: E731
    return Dataset("digits-slice", cut(d.train, 256), cut(d.val, 64), cut(d.test, 64), d.classes)


@pytest.mark.parametrize("name", SPACES)
def test_a_sample_trains(name, tiny_digits):
    from nacos.train import train

    space = spaces.create(name)
    graph = space.to_graph(space.sample(np.random.default_rng(7)), (1, 1, 16, 16), num_classes=10)
    res = train(graph, tiny_digits, epochs=2, max_steps=12, progress=False)
    assert res.steps == 12 and np.isfinite(res.losses).all() and res.losses[0] < 2.5
    assert any(not np.array_equal(w, graph.params[k]) for k, w in res.weights.items())


def test_make_stores_the_choice_itself_and_indices_must_be_in_range():
    # numpy integers (what optimizers give) broke the archid's JSON; 2.0 gave another archid than 2 and a graph
    # builder error; a negative index took a choice from the end
    from nacos import spaces

    space = spaces.create("resnet")
    plain = space.make(stages=2)
    assert space.make(stages=np.int64(2)).archid == plain.archid == space.make(stages=2.0).archid
    assert type(space.make(stages=np.int64(2))["stages"]) is int
    with pytest.raises(ValueError, match="is not one of"):
        space.make(stages=True)
    with pytest.raises(ValueError, match="outside"):
        space.from_indices([-1] + [0] * (len(space.variables()) - 1))
