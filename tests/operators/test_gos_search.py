"""The GOS search loop (NSGA-II ask/tell) on a tiny CNN with a tiny budget, the Pareto filter, the analysis
ranking and the report's instruction text. The roofline latency model keeps this free of TVM builds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from operators.gos import examples
from operators.gos.latency import Roofline
from operators.gos.space import node_candidates
from operators.gos.analysis import analyze
from operators.gos.report import instruction_text, render_markdown
from operators.gos.search import Evaluation, FinetuneConfig, GOSSearch, SearchConfig, pareto_front


def ev(acc, lat, key="a", error=None):
    return Evaluation(((key, "dwsep"),), acc, lat, 0, 0, acc, error=error)


def test_pareto_front_keeps_the_non_dominated():
    evals = [ev(0.9, 3.0, "a"), ev(0.8, 1.0, "b"), ev(0.85, 2.0, "c"), ev(0.8, 2.5, "d"),
             ev(0.99, 0.1, "e", error="boom")]
    assert [e.choices[0][0] for e in pareto_front(evals)] == ["b", "c", "a"]


class GroupsAreSlow(Roofline):
    """A target where grouped convs run 50× slower than their FLOPs say (as on some accelerators)."""

    def kernels(self, graph):
        nodes = graph.node_map
        return [replace(k, seconds=k.seconds * (50 if nodes[k.nodes[0]].attr("groups", 1) > 1 else 1))
                for k in super().kernels(graph)]


def test_candidates_are_pruned_by_latency_on_the_target():
    g = examples.vgg_style(widths=(16, 32))
    plain = node_candidates(g, "s2.conv2", max_per_op=50)
    timed = node_candidates(g, "s2.conv2", max_per_op=50, latency=GroupsAreSlow(overhead_s=0))
    assert any("group" in c.rewrite or "dwsep" in c.rewrite for c in plain)
    assert timed and all("group" not in c.rewrite and "dwsep" not in c.rewrite for c in timed)
    for c in timed:
        assert c.latency_after * 1.1 <= c.latency_before
        assert not any(o.latency_after < c.latency_after and o.params_after > c.params_after for o in timed)


def test_analysis_ranks_ops_by_share_with_rewrites():
    a = analyze(examples.tiny_cnn(), latency="roofline")
    shares = [r.share for r in a.rows]
    assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 1) < 1e-9
    top = a.rows[0]
    assert top.op == "conv" and top.rewrites and 0 < top.best_flops_cut < 1
    assert top.flops > 0 and top.bytes > 0 and top.gflops > 0 and "of latency" in top.why()
    assert a.top(2)[0].node == top.node


@pytest.fixture(scope="module")
def search_result():
    cfg = SearchConfig(population=4, generations=2, max_ops=2, max_per_op=3, depth=1, on_target=False,
                       finetune=FinetuneConfig(epochs=1, max_steps=3), final_epochs=0)
    search = GOSSearch(examples.tiny_cnn(), "digits", latency="roofline", config=cfg)
    return search, search.run()


def test_search_explores_and_returns_a_pareto_set(search_result):
    search, result = search_result
    assert len(result.genes) == 2 and all(opts[0] == "keep" for _, opts in result.genes)
    assert result.original.choices == () and result.original.test_accuracy is not None
    assert 3 <= len(result.evaluations) <= 8
    assert result.pareto and all(e.test_accuracy is not None and e.choices for e in result.pareto)
    lat = [e.latency_s for e in result.pareto]
    assert lat == sorted(lat) and min(lat) < result.original.latency_s
    for e in result.pareto:   # every member's graph is there, fine-tuned, with the chosen ops rewritten
        g = result.graphs[e.key]
        assert g.output_types() == examples.tiny_cnn().output_types()
        assert e.flops < result.original.flops
    assert search.evaluate(dict(result.pareto[0].choices)) is search.cache[result.pareto[0].choices]


def test_a_failing_candidate_is_data_not_an_exception(search_result, monkeypatch):
    search, _ = search_result
    import operators.gos.search as mod

    def broken(graph, choices):
        raise RuntimeError("boom")

    monkeypatch.setattr(mod, "apply", broken)
    bad = search.evaluate({search.genes[0][0]: "dwsep:7"})   # a genome not evaluated before
    assert bad.error and "boom" in bad.error and bad.objectives() == (0.0, 1e9)


def test_report_prints_instructions_and_effects():
    from operators.gos.report import OpEffect

    g = examples.tiny_cnn()
    text = instruction_text(g, "conv2")
    assert text.startswith("%conv2 = conv(") and "Σ_{c<8, r0<3, r1<3}" in text and "conv2.w[k, c, r0, r1]" in text
    effect = OpEffect("conv2", "dwsep", 10, 2, 5, 1, 2e-6, 1e-6, 0.5, text, text)
    payload = {"graph": "g", "dataset": "digits", "latency_model": "roofline",
               "timing": {"rounds": 3, "schedules": "default"},
               "original": {"test_accuracy": 0.9, "val_accuracy": 0.9, "flops": 1e6},
               "pareto": [{"id": "m1", "key": "conv2=dwsep", "choices": {"conv2": "dwsep"}, "speedup": 2.5,
                           "test_accuracy": 0.89, "val_accuracy": 0.9, "flops": 5e5, "params": 10}]}
    md = render_markdown(payload, {"conv2=dwsep": [effect]})
    assert "2.50×" in md and "-1.0 pt" in md and "Original instruction" in md and "Σ_{c<8" in md


def test_gos_analyze_stays_the_function_after_a_search_imported_its_module():
    import operators.gos.analysis  # noqa: F401 — a search imports it; it once replaced gos.analyze
    from operators import gos

    assert callable(gos.analyze) and not isinstance(gos.analyze, type(operators))


def test_the_step_cap_limits_searched_candidates_not_the_final_fine_tune(search_result, monkeypatch):
    import dataclasses

    import nacos.train

    search, result = search_result
    caps = []

    def fake_train(graph, data, cfg, teacher=None):
        caps.append(cfg.max_steps)
        return type("R", (), {"apply": lambda self, g: g, "val_accuracy": 0.5})()

    monkeypatch.setattr(nacos.train, "train", fake_train)
    monkeypatch.setattr(search, "config", dataclasses.replace(search.config, final_epochs=1))
    search._finalize(result.pareto[0])
    search.evaluate({search.genes[0][0]: search.genes[0][1][-1], search.genes[1][0]: search.genes[1][1][-1]})
    assert caps[0] is None  # the final fine-tune runs all of final_epochs
    assert caps[1:] in ([], [3])  # a searched candidate keeps the cap (when not already cached)


def test_a_member_the_final_fine_tune_makes_dominated_is_dropped_from_the_front(monkeypatch):
    """The search-time front is m1 < m2 < m3 in latency, each more accurate; after the final fine-tune m3 (slower)
    is less accurate than m2 on validation, so it is dominated and must not be reported as a Pareto member."""
    g0 = examples.tiny_cnn()
    cfg = SearchConfig(final_epochs=1, max_final=6, on_target=False)
    search = GOSSearch(g0, "digits", latency="roofline", config=cfg)
    members = {  # key node: (search val, search latency, final val, final test)
        "a": (0.30, 5e-6, 0.35, 0.34), "b": (0.40, 10e-6, 0.469, 0.454), "c": (0.45, 20e-6, 0.408, 0.435)}
    original = Evaluation((), 0.95, 60e-6, 100, 10, 0.95)

    def fake_evaluate(choices):
        return original
    monkeypatch.setattr(search, "evaluate", fake_evaluate)
    monkeypatch.setattr(search, "choose_genes", lambda: [("conv1", ("keep", "dwsep"))])

    def fake_nsga2():
        for k, (val, lat, _, _) in members.items():
            e = ev(val, lat, k)
            search.cache[e.choices] = e
            search.graphs[e.key] = k        # a stand-in graph: the stubs below only look it up
    monkeypatch.setattr(search, "_nsga2", fake_nsga2)
    monkeypatch.setattr(search, "_finetune", lambda g, epochs, max_steps=None: (g, members[g][2]))
    monkeypatch.setattr(search, "_accuracy", lambda g, split: 0.95 if g is g0 else members[g][3])

    result = search.run()
    assert [e.choices[0][0] for e in result.pareto] == ["a", "b"]
    assert [e.val_accuracy for e in result.pareto] == [0.35, 0.469]      # the final (fine-tuned) accuracies
    assert "c=dwsep" not in result.graphs
    assert [(d.member.key, d.dominated_by) for d in result.dropped] == [("c=dwsep", "b=dwsep")]
    assert result.as_dict()["dropped"][0]["dominated_by"] == "b=dwsep"


def test_the_report_says_which_member_was_dropped_and_why():
    payload = {"graph": "g", "dataset": "digits", "latency_model": "roofline",
               "timing": {"rounds": 3, "schedules": "default"},
               "original": {"test_accuracy": 0.9, "val_accuracy": 0.9, "flops": 1e6},
               "pareto": [{"id": "m1", "key": "conv2=dwsep", "choices": {"conv2": "dwsep"}, "speedup": 2.5,
                           "test_accuracy": 0.89, "val_accuracy": 0.9, "flops": 5e5, "params": 10}],
               "dropped": [{"key": "conv1=dwsep", "choices": {"conv1": "dwsep"}, "dominated_by": "m1",
                            "val_accuracy": 0.8, "latency_s": 2e-5, "by_val_accuracy": 0.9, "by_latency_s": 1e-5}]}
    md = render_markdown(payload, {})
    assert "`conv1=dwsep` dropped: dominated by m1 after the final fine-tune" in md
