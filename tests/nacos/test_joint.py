"""Unit tests of the joint search's parts: genome, store, calibration, final front, targets, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from nacos import spaces
from nacos.joint.evaluate import Calibration
from nacos.joint.genome import DEFAULT, TUNED, Genome, JointGenome, menu, slot_order
from nacos.joint.result import Result, final_front, hypervolume, latency_model_quality
from nacos.joint.store import RunStore
from schedules.space import DEFAULT_SCHEDULE
from schedules.workload import target_key, unique_workloads


@pytest.fixture(scope="module")
def hyt():
    return spaces.create("hyt")


@pytest.fixture(scope="module")
def arch_workloads(hyt):
    arch = hyt.sample(np.random.default_rng(1))
    graph = hyt.to_graph(arch, (1, 1, 16, 16), 10)
    return arch, unique_workloads(graph, target_key())


# ---- genome ------------------------------------------------------------------------------------------------
def test_genome_variables_cover_architecture_and_schedule_slots(hyt):
    from pymoo.core.variable import Choice, Integer

    g = JointGenome(hyt, slots=5, menu_size=6)
    v = g.variables()
    assert len(v) == len(hyt.variables()) + 5
    assert all(isinstance(v[f"k{i}"], Integer) and v[f"k{i}"].bounds == (0, 5) for i in range(5))
    assert isinstance(v["a:s2_block"], Choice) and isinstance(v["a:stem"], Integer)


def test_genome_decode_inverts_encode(hyt):
    g = JointGenome(hyt, slots=3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        genome = Genome(hyt.sample(rng), tuple(int(x) for x in rng.integers(0, 6, 3)))
        back = g.decode(g.encode(genome))
        assert back == genome and back.key == genome.key
    assert Genome(genome.arch).key == genome.arch.archid


def test_menu_is_fixed_per_workload_and_never_the_reserved_default(arch_workloads):
    _, wl = arch_workloads
    for w, _ in wl[:6]:
        first = menu(w, 6)
        menu.cache_clear()
        assert menu(w, 6) == first  # same points in another process / after --resume
        assert len(first) <= 4 and DEFAULT_SCHEDULE not in first
        assert len(set(first)) == len(first)


def test_schedule_genes_pick_default_tuned_or_menu_points(hyt, arch_workloads):
    arch, wl = arch_workloads
    ranked = slot_order(wl)
    assert [w.flops * n for w, n in ranked] == sorted((w.flops * n for w, n in wl), reverse=True)
    top = ranked[0][0]
    g = JointGenome(hyt, slots=3, menu_size=6)
    tuned_point = menu(top, 6)[-1]
    chosen = g.schedule_of(Genome(arch, (DEFAULT, TUNED, 2)), wl, {top.key: tuned_point})
    assert chosen[top.key] == DEFAULT_SCHEDULE                      # slot 0: gene 0
    assert chosen[ranked[1][0].key] == DEFAULT_SCHEDULE             # slot 1: tuned, but nothing tuned yet
    assert chosen[ranked[2][0].key] in (menu(ranked[2][0], 6)[0], DEFAULT_SCHEDULE)
    chosen = g.schedule_of(Genome(arch, (TUNED, TUNED, TUNED)), wl, {top.key: tuned_point})
    assert chosen[top.key] == tuned_point
    # the NAS stage of the two-stage baseline: no genes, every kernel on its default schedule
    nas = JointGenome(hyt, slots=0, menu_size=2, rest=DEFAULT)
    assert set(nas.schedule_of(Genome(arch), wl, {top.key: tuned_point}).values()) == {DEFAULT_SCHEDULE}


def test_genome_rejects_bad_settings(hyt):
    with pytest.raises(ValueError):
        JointGenome(hyt, slots=2, menu_size=1)
    with pytest.raises(ValueError):
        JointGenome(hyt, slots=-1)


# ---- store ---------------------------------------------------------------------------------------------------
def test_store_counts_each_individual_once_and_survives_reopening(tmp_path):
    path = str(tmp_path / "run.db")
    s = RunStore(path, "joint")
    s.add_evaluation("a/1.2", "a", 0, [0.1, 0.2, 0.3], {"latency_s": 2e-4})
    s.add_evaluation("a/1.2", "a", 1, [0.5, 0.5, 0.5], {})  # a cache hit is not a new evaluation
    s.add_evaluation("b", "b", 0, [0.2, 0.1, 0.3], {})
    s.add_accuracy("a", "digits:e1", 0.9, 0.88, 3.0, {"arch": [["stem", 4]]})
    s.add_measured("a/1.2", {"id": "c0000", "latency_ms": 0.1})
    s.set_meta("elapsed", 12.5)
    s.close()
    s = RunStore(path, "joint")
    assert s.evaluations() == 2 and s.evaluation("a/1.2")[0] == [0.1, 0.2, 0.3]
    assert s.accuracy("a", "digits:e1")["arch"] == [["stem", 4]] and s.trained("digits:e1") == [("a", 0.9)]
    assert s.measured() == [{"id": "c0000", "latency_ms": 0.1}] and s.get_meta("elapsed") == 12.5
    assert RunStore(path, "two-stage").evaluations() == 0  # runs share the file, not their rows


# ---- calibration, fronts, quality ------------------------------------------------------------------------------
def test_calibration_recovers_scale_and_per_kernel_overhead():
    rng = np.random.default_rng(0)
    sums = rng.uniform(2e-5, 2e-4, 12)
    calls = rng.integers(30, 150, 12)
    measured = 1.3 * sums + 0.8e-6 * calls
    c = Calibration()
    c.fit(sums, calls, measured)
    assert c.a == pytest.approx(1.3, rel=1e-3) and c.b == pytest.approx(0.8e-6, rel=1e-3)
    c.fit(sums[:1], calls[:1], measured[:1])
    assert c.b == 0.0 and c(sums[0], calls[0]) == pytest.approx(measured[0])


def _row(i, val, lat, mem, test=None):
    return {"id": f"c{i:04d}", "key": str(i), "archid": str(i), "arch": {}, "val_accuracy": val,
            "accuracy": val if test is None else test, "latency_ms": lat, "memory_bytes": mem,
            "latency_predicted_ms": lat * 1.1, "params": 1, "flops": 1}


def test_final_front_is_the_nondominated_measured_set_within_budget():
    rows = [_row(0, 0.9, 0.2, 100), _row(1, 0.8, 0.1, 100), _row(2, 0.7, 0.3, 100), _row(3, 0.95, 0.5, 50),
            {**_row(4, 0.99, 0.01, 1), "latency_ms": None, "error": "RuntimeError: boom"}]
    front, violations = final_front(rows)
    assert [r["id"] for r in front] == ["c0001", "c0000", "c0003"] and violations is None
    front, _ = final_front(rows, latency_max_ms=0.25)
    assert [r["id"] for r in front] == ["c0001", "c0000"]
    front, violations = final_front(rows, latency_max_ms=0.01)
    assert front == [] and "no candidate met the budget" in violations["message"]
    assert violations["closest"][0]["id"] == "c0001"  # the fastest is the closest to a latency budget


def test_hypervolume_and_latency_model_quality():
    rows = [_row(0, 0.5, 1.0, 1), _row(1, 0.75, 2.0, 1)]
    # union of boxes under reference (error 1, latency 3): 0.5·2 + 0.25·1
    assert hypervolume(rows, 1.0, 3.0) == pytest.approx(1.25)
    assert hypervolume([], 1.0, 3.0) == 0.0
    q = latency_model_quality([_row(i, 0.5, 0.1 * (i + 1), 1) for i in range(4)])
    assert q["kendall_tau"] == 1.0 and q["mape"] == pytest.approx(0.1) and q["n"] == 4


def test_result_best_respects_limits(tmp_path):
    front = [_row(1, 0.8, 0.1, 2**20), _row(0, 0.9, 0.2, 2**21)]
    r = Result({"pareto": front, "measured": front}, tmp_path)
    assert r.best().id == "c0000" and r.best(latency_max_ms=0.15).id == "c0001"
    assert r.best(memory_max_mb=1.5).id == "c0001" and r.best(latency_max_ms=0.01) is None


# ---- targets and bad input -----------------------------------------------------------------------------------
def test_targets_registry_names_the_valid_ones():
    from nacos import targets

    assert targets.create().name == "host" and "host" in targets.available()
    with pytest.raises(ValueError, match="available: .*host"):
        targets.create("tpu")
    with pytest.raises(NotImplementedError, match="not supported yet"):
        targets.create("rpc")


@pytest.mark.parametrize("kw, match", [
    ({"space": "nope"}, "unknown search space 'nope'; available: hyt, mbv2, resnet"),
    ({"target": "tpu"}, "unknown target 'tpu'; available:"),
    ({"target": "rpc"}, "not supported yet"),
    ({"dataset": "mnist-but-not"}, "unknown dataset"),
    ({"budget_minutes": 0}, "budget_minutes must be a number > 0"),
    ({"latency_max_ms": -1}, "latency_max_ms must be a number > 0"),
    ({"latency_max_ms": float("nan")}, "latency_max_ms must be a number > 0"),
    ({"budget_minutes": float("inf")}, "budget_minutes must be a number > 0"),
    ({"epochs": 0}, "epochs must be ≥ 1"),
    ({"measure_per_generation": 0}, "measure_per_generation must be ≥ 1"),
    ({"slots": -1}, "slots cannot be negative"),
    ({"dataset": "folder"}, "give the path"),
    ({"fidelity": "guess"}, "unknown fidelity"),
    ({"colour": "red"}, "unknown options"),
])
def test_optimize_rejects_bad_input_before_doing_anything(tmp_path, kw, match):
    import nacos
    from nacos.joint.api import OptimizeError

    with pytest.raises(OptimizeError, match=match):
        nacos.optimize(out=tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_optimize_refuses_to_mix_runs(tmp_path):
    import nacos
    from nacos.joint.api import OptimizeError

    with pytest.raises(OptimizeError, match="nothing to resume"):
        nacos.optimize(out=tmp_path, resume=True)
    (tmp_path / "nacos.db").write_bytes(b"")
    with pytest.raises(OptimizeError, match="--resume continues it, --force starts over"):
        nacos.optimize(out=tmp_path)


def test_a_dataset_or_model_that_does_not_fit_leaves_no_run_behind(tmp_path):
    import numpy as np
    import torch

    import nacos
    from nacos.data import DatasetError
    from nacos.joint.api import OptimizeError
    from tests.conftest import export_onnx

    tiny = tmp_path / "tiny.npz"  # 2 images a class: no validation or test split
    np.savez(tiny, x=np.zeros((4, 8, 8), np.float32), y=np.array([0, 0, 1, 1]))
    with pytest.raises(DatasetError, match="too few"):
        nacos.optimize(out=tmp_path / "a", dataset=str(tiny))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
                              torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 5)).eval()
    model = tmp_path / "m.onnx"
    export_onnx(net, (torch.randn(1, 3, 8, 8),), model)
    with pytest.raises(OptimizeError, match="does not fit"):  # digits: 1×16×16 images of 10 classes
        nacos.optimize(out=tmp_path / "b", model=str(model))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_best_is_chosen_on_validation_accuracy_not_test():
    from nacos.joint.result import best_within

    a = dict(_row(0, 0.9, 0.1, 1), val_accuracy=0.6)  # best on test, worse on validation
    b = dict(_row(1, 0.8, 0.1, 1), val_accuracy=0.7)
    assert best_within([a, b])["id"] == "c0001"


def test_the_clock_of_a_search_is_saved_while_it_trains(tmp_path):
    import threading
    import time
    from types import SimpleNamespace

    from nacos.joint.runs import RunContext
    from nacos.joint.store import RunStore

    store = RunStore(str(tmp_path / "s.db"), "joint")
    started = time.time()
    ctx = SimpleNamespace(store=store, run="joint", elapsed=lambda: 100.0 + time.time() - started)
    stop = threading.Event()
    clock = threading.Thread(target=RunContext._save_elapsed_every, args=(ctx, 0.05, stop))
    clock.start()
    try:
        deadline = time.time() + 10
        while store.get_meta("elapsed") is None and time.time() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        clock.join()
    assert store.get_meta("elapsed") >= 100.0  # a kill now loses at most one period of the clock


def test_a_resumed_run_says_which_new_options_it_ignores(tmp_path, monkeypatch):
    import nacos
    from nacos.joint import api
    from nacos.joint.runs import OptimizeConfig
    from nacos.joint.store import RunStore

    (tmp_path / "run").mkdir()
    store = RunStore(str(tmp_path / "run" / api.DB_NAME), "joint")
    store.set_meta("config", OptimizeConfig(budget_minutes=4.0).as_dict())
    store.close()
    used = {}
    monkeypatch.setattr(api, "_run_joint", lambda cfg, *a: used.setdefault("cfg", cfg) and {"pareto": []})
    monkeypatch.setattr("nacos.joint.report.write_outputs", lambda payload, out: [])
    with pytest.warns(UserWarning, match=r"ignored: budget_minutes=9\.0 \(kept 4\.0\)"):
        nacos.optimize(out=tmp_path / "run", resume=True, budget_minutes=9.0)
    assert used["cfg"].budget_minutes == 4.0


def test_the_saved_configuration_keeps_absolute_paths_and_a_file_is_no_output_folder(tmp_path, monkeypatch):
    import numpy as np

    import nacos
    from nacos.joint import api
    from nacos.joint.store import RunStore

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 8, 8)).astype(np.float32), y=np.arange(40) % 2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(api, "_run_joint", lambda cfg, *a: {"pareto": []})
    monkeypatch.setattr("nacos.joint.report.write_outputs", lambda payload, out: [])
    nacos.optimize(out="run", dataset="d.npz")
    store = RunStore(str(tmp_path / "run" / api.DB_NAME), "joint")
    assert store.get_meta("config")["dataset"] == str(tmp_path / "d.npz")  # --resume works from any folder
    store.close()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(api.OptimizeError, match="not a folder"):
        nacos.optimize(out="afile", dataset="d.npz")


def test_finish_keeps_the_closest_members_artifacts_and_counts_every_processs_training(tmp_path):
    from types import SimpleNamespace

    from nacos.joint.api import finish
    from nacos.joint.runs import OptimizeConfig
    from nacos.joint.store import RunStore

    store = RunStore(str(tmp_path / "s.db"), "joint")
    store.add_accuracy("a", "s", 0.9, 0.9, 30.0)  # trained by an earlier, killed process
    store.add_accuracy("b", "s", 0.8, 0.8, 12.5)
    rows = [dict(_row(i, 0.9 - i / 10, 0.5 + i, 1), artifact=f"members/c{i:04d}", onnx="m.onnx") for i in range(3)]
    for r in rows:
        store.add_measured(r["key"], r)
    removed = []
    ctx = SimpleNamespace(
        cfg=OptimizeConfig(latency_max_ms=0.1, compare_default=False), store=store, db=SimpleNamespace(count=lambda: 0),
        measurer=SimpleNamespace(remove_artifact=removed.append), elapsed=lambda: 1.0, tkey="k",
        target=SimpleNamespace(name="host"), evaluator=SimpleNamespace(calibration=SimpleNamespace(a=1.0, b=0.0)))
    payload = finish(ctx, "joint", 1, SimpleNamespace(note=lambda *a: None))
    closest = [m["id"] for m in payload["budget_violations"]["closest"]]
    assert closest and all(m["artifact"] for m in payload["budget_violations"]["closest"])
    assert not set(removed) & set(closest)  # the report links to them
    assert payload["stats"]["training_seconds"] == 42.5
