"""Depthwise → 1×1 chains: which groups join (schedules.fusion.CHAINS), the chain schedule (schedules.chain) and
the compiled numerics against torch and against the same model compiled with the two kernels apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nacos
from schedules.chain import chain_blocks
from schedules.default import default_schedule
from schedules.fusion import is_chain, kernel_graph, partition
from schedules.lowering import lower_group
from schedules.tvm_env import tvm


class InvertedResidual(torch.nn.Module):
    """MobileNetV2's block: 1×1 expand, 3×3 depthwise (stride 1 or 2), 1×1 project, residual when shapes allow."""

    def __init__(self, c: int, expand: int, stride: int = 1, out: int | None = None) -> None:
        super().__init__()
        out = out or c
        mid = c * expand
        self.residual = stride == 1 and out == c
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(c, mid, 1, bias=False), torch.nn.BatchNorm2d(mid), torch.nn.ReLU6(),
            torch.nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), torch.nn.BatchNorm2d(mid),
            torch.nn.ReLU6(),
            torch.nn.Conv2d(mid, out, 1, bias=False), torch.nn.BatchNorm2d(out))

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def _block(stride: int = 1, out: int | None = None, size: int = 14, seed: int = 0):
    torch.manual_seed(seed)
    m = InvertedResidual(16, 3, stride, out).eval()
    for bn in m.modules():  # non-trivial batch norms, so folding mistakes show
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 16, size, size)
    return m, x


def _ops(groups):
    return [[n.op for n in g.nodes] for g in groups]


def test_a_blocked_depthwise_conv_joins_the_1x1_conv_that_alone_reads_it():
    m, x = _block()
    graph = kernel_graph(nacos.load(m, (x,)), "blocked")
    groups = partition(graph)
    chains = [g for g in groups if is_chain(g)]
    assert len(chains) == 1
    ops = [n.op for n in chains[0].nodes]
    assert ops[0] == "dwconv2d_nchwc" and "conv2d_nchwc" in ops and ops[-1] == "add"  # residual add: its epilogue
    assert [o for o in _ops(partition(graph, chains=False)) if o[0] == "dwconv2d_nchwc"][0] == ["dwconv2d_nchwc", "clip"]


def test_no_chain_without_a_pointwise_reader_nor_in_the_nchw_layout(monkeypatch):
    m, x = _block()
    graph = nacos.load(m, (x,))
    assert not any(is_chain(g) for g in partition(kernel_graph(graph, "nchw")))
    monkeypatch.setenv("NACOS_CHAINS", "0")
    assert not any(is_chain(g) for g in partition(kernel_graph(graph, "blocked")))
    monkeypatch.setenv("NACOS_CHAINS", "maybe")
    with pytest.raises(ValueError, match="NACOS_CHAINS"):
        partition(kernel_graph(graph, "blocked"))


def test_a_depthwise_output_read_twice_stays_its_own_kernel():
    class TwoReaders(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16)
            self.pw = torch.nn.Conv2d(16, 16, 1)

        def forward(self, x):
            y = torch.relu(self.dw(x))
            return self.pw(y) + y

    torch.manual_seed(0)
    m, x = TwoReaders().eval(), torch.randn(1, 16, 8, 8)
    graph = kernel_graph(nacos.load(m, (x,)), "blocked")
    assert not any(is_chain(g) for g in partition(graph))
    np.testing.assert_allclose(nacos.compile(nacos.load(m, (x,)))(x.numpy())[0], m(x).detach().numpy(),
                               rtol=1e-4, atol=1e-4)


def _chain_schedule(m, x):
    graph = kernel_graph(nacos.load(m, (x,)), "blocked")
    group = next(g for g in partition(graph) if is_chain(g))
    func, hint = lower_group(graph, group)
    return graph, group, default_schedule(func, hint)


def test_the_chain_schedule_runs_rows_in_parallel_with_the_depthwise_row_in_a_row_buffer():
    m, x = _block(size=14)
    graph, group, sch = _chain_schedule(m, x)
    text = sch.mod["main"].script()
    assert "T.parallel(14)" in text  # one parallel loop over the 14 output rows, nothing else fused into it
    dw = sch.get_sblock("n0_conv_update")
    assert sch.get(sch.get_loops(dw)[0]).kind == tvm.tirx.ForKind.PARALLEL  # the depthwise row is computed in it
    lowered = tvm.s_tir.transform.CompactBufferAllocation()(
        tvm.s_tir.transform.PlanAndUpdateBufferAllocationLocation()(
            tvm.s_tir.transform.ConvertBlocksToOpaque()(sch.mod)))
    text = lowered["main"].script()
    # the depthwise result (after its clip): 6 channel blocks × 1 row × 14 columns × 8 lanes, not 14 rows
    assert "n1_Y = T.sblock_alloc_buffer((1, 6, 1, 14, 8))" in text, text[:2000]


def test_a_function_that_is_not_a_chain_is_not_scheduled_as_one():
    m, x = _block()
    graph = kernel_graph(nacos.load(m, (x,)), "blocked")
    plain = next(g for g in partition(graph, chains=False) if g.nodes[0].op == "dwconv2d_nchwc")
    func, _ = lower_group(graph, plain)
    assert chain_blocks(tvm.s_tir.Schedule(func)) is None


@pytest.mark.parametrize("stride,out", [(1, None), (2, 24)])
def test_chained_models_match_torch_and_the_kernels_apart(monkeypatch, stride, out):
    m, x = _block(stride, out, size=14, seed=stride)
    want = m(x).detach().numpy()
    graph = nacos.load(m, (x,))
    chained = nacos.compile(graph)
    assert any("dwconv2d_nchwc" in k.name and "_conv2d_nchwc" in k.name for k in chained.kernels)
    monkeypatch.setenv("NACOS_CHAINS", "0")
    apart = nacos.compile(graph)
    assert not any(len([o for o in k.ops if "conv" in o]) > 1 for k in apart.kernels)
    got, ref = chained(x.numpy())[0], apart(x.numpy())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def _chain_workload(size: int = 14):
    from schedules.workload import target_key, workloads_from_graph

    m, x = _block(size=size)
    graph = kernel_graph(nacos.load(m, (x,)), "blocked")
    return next(w for g, w in workloads_from_graph(graph, target_key()) if is_chain(w.group))


def test_a_chain_has_a_space_of_register_tiles_and_its_default_point_is_the_default_schedule():
    import random

    from schedules.chain_space import ChainSpace
    from schedules.tiled import ACC_REGISTERS
    from schedules.features import FEATURE_NAMES, extract
    from schedules.space import DEFAULT_SCHEDULE, Point, default_matches, space_for

    w = _chain_workload()
    space = space_for(w)
    assert isinstance(space, ChainSpace) and space.kind == "chain"
    assert space.pw_shape == (1, 2, 14, 14, 8) and space.dw_shape == (1, 6, 14, 14, 8)
    assert default_matches(w)  # the default point issues exactly schedules.chain's default primitives
    rng = random.Random(0)
    points = [space.sample(rng) for _ in range(30)] + [space.mutate(space.default(), rng) for _ in range(30)]
    points += [space.crossover(points[0], points[1], rng)]
    assert all(space.is_valid(p) and p["pw_k"] * p["pw_w"] <= ACC_REGISTERS for p in points)
    assert len(set(points)) > 20
    # points of another space (a plain depthwise conv's) and out-of-range values are repaired, not crashed on
    fixed = space.repair(Point.of({"s0": (1, 1), "pw_k": 2, "pw_w": 99, "dw_w": 1}))
    assert space.is_valid(fixed) and fixed["pw_w"] == 6 and fixed["dw_w"] == 2
    assert space.repair(DEFAULT_SCHEDULE) == DEFAULT_SCHEDULE
    row = dict(zip(FEATURE_NAMES, extract(w, points[0])))
    assert row["chain"] == 1.0 and row["acc_vregs"] == points[0]["pw_k"] * points[0]["pw_w"]


@pytest.mark.parametrize("size", [7, 1])
def test_every_measured_chain_point_computes_what_the_reference_computes(size):
    import random

    from schedules.measure import LocalBuilder, MeasureInput, measure
    from schedules.runner import LocalRunner
    from schedules.space import space_for

    # 7 columns: ragged tiles (pw_w 2, 3, 4, …) leave a partial last tile; 1 column (a deep stage of a small
    # input) has nothing to tile: every point of its space failed to schedule
    w = _chain_workload(size=size)
    space = space_for(w)
    rng = random.Random(1)
    points = list(dict.fromkeys([space.default()] + [space.sample(rng) for _ in range(5)]))
    builder, runner = LocalBuilder(), LocalRunner()
    try:
        results = measure(builder, runner, [MeasureInput(w, p) for p in points])
    finally:
        builder.close()
        runner.close()
    # the runner checks each output against the unscheduled function's before timing it
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


def test_nacos_tune_tunes_chains_and_compile_uses_their_tuned_schedule(tmp_path):
    from schedules.database import Database

    m, x = _block(size=14)
    graph = nacos.load(m, (x,))
    report = nacos.tune(graph, trials=24, db=str(tmp_path / "t.db"))
    chain = [t for t in report.tasks if "dwconv2d_nchwc" in t.name and "_conv2d_nchwc" in t.name]
    assert len(chain) == 1 and chain[0].trials > 1 and chain[0].best_latency is not None, report.tasks
    with Database(str(tmp_path / "t.db")) as db:
        compiled = nacos.compile(graph, schedules=db.schedules(graph))
    np.testing.assert_allclose(compiled(x.numpy())[0], m(x).detach().numpy(), rtol=1e-4, atol=1e-4)
