"""``nacos optimize``'s output folder and ``--resume``: what it refuses, what it keeps, what it says.

The search itself is replaced by a stub (these are checks of the folder and of the configuration, made before
any search starts), so every test runs in about a second.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

_PAYLOAD = {"method": "joint", "pareto": [], "budget_violations": None,
            "stats": {"evaluations": 0, "measured": 0, "generations": 0, "seconds": 0.0}}


@pytest.fixture
def stub_search(monkeypatch):
    """Replace the search and the report by stubs; yields the configuration each run was given."""
    from nacos.joint import api

    used = []
    monkeypatch.setattr(api, "_run_joint", lambda cfg, *a: used.append(cfg) or dict(_PAYLOAD))
    monkeypatch.setattr("nacos.joint.report.write_outputs", lambda payload, out: [])
    return used


def _saved_run(path, **cfg):
    """A folder holding an optimize run started with ``cfg``."""
    from nacos.joint import api
    from nacos.joint.runs import OptimizeConfig
    from nacos.joint.store import RunStore

    path.mkdir()
    store = RunStore(str(path / api.DB_NAME), "joint")
    store.set_meta("config", OptimizeConfig(**cfg).as_dict())
    store.close()
    return path


SAVED = dict(space="hyt", budget_minutes=0.3, epochs=1, population=4, tune_trials=2, measure_per_generation=1)


def _foreign_folder(path):
    """A folder of another command's files (``nacos gos``'s outputs, say)."""
    path.mkdir()
    (path / "pareto.json").write_text('{"not": "an optimize run"}')
    (path / "report.md").write_text("# GOS report\n")
    (path / "members").mkdir()
    (path / "members" / "m0").write_text("someone else's")
    return {p.relative_to(path).as_posix(): (p.read_text() if p.is_file() else None) for p in path.rglob("*")}


def _contents(path):
    return {p.relative_to(path).as_posix(): (p.read_text() if p.is_file() else None) for p in path.rglob("*")}


# ---- the output folder ------------------------------------------------------------------------------------------

def test_cli_refuses_a_non_empty_folder_that_holds_no_optimize_run(tmp_path):
    """The reported case: exit 2, one line, and the folder's files are left as they were."""
    out = tmp_path / "gosout"
    before = _foreign_folder(out)
    proc = subprocess.run([sys.executable, "-m", "nacos.cli", "optimize", "-o", str(out), "--budget-minutes", "0.2",
                           "--population", "4", "--epochs", "1", "--tune-trials", "2", "--measure-per-generation", "1",
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nacos optimize: error:"), proc.stderr
    assert "is not empty" in lines[0] and "--force" in lines[0]
    assert _contents(out) == before


def test_api_refuses_a_non_empty_folder_and_writes_nothing(tmp_path, stub_search):
    import nacos
    from nacos.joint.api import OptimizeError

    out = tmp_path / "other"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OptimizeError, match=r"is not empty.*use --force to overwrite"):
        nacos.optimize(out=out, budget_minutes=0.2)
    assert _contents(out) == {"notes.txt": "mine"} and not stub_search


def test_an_empty_folder_is_used_and_force_replaces_a_non_empty_one(tmp_path, stub_search):
    import nacos
    from nacos.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    nacos.optimize(out=empty, budget_minutes=0.2)
    assert (empty / "nacos.db").is_file()
    out = tmp_path / "gosout"
    _foreign_folder(out)
    assert main(["optimize", "-o", str(out), "--force", "--quiet", "--budget-minutes", "0.2"]) == 0
    assert (out / "nacos.db").is_file() and not (out / "pareto.json").exists() and not (out / "members").exists()
    assert len(stub_search) == 2


def test_force_never_deletes_a_folder_that_holds_the_model_or_dataset(tmp_path, stub_search):
    import numpy as np

    import nacos
    from nacos.joint.api import OptimizeError

    out = tmp_path / "out"
    out.mkdir()
    rng = np.random.default_rng(0)
    np.savez(out / "d.npz", x=rng.random((40, 8, 8)).astype(np.float32), y=np.arange(40) % 2)
    with pytest.raises(OptimizeError, match="holds the input"):
        nacos.optimize(out=out, dataset=str(out / "d.npz"), force=True)
    assert (out / "d.npz").is_file() and not stub_search


def test_a_folder_holding_a_run_still_asks_for_resume_or_force(tmp_path, capsys):
    from nacos.cli import main

    out = _saved_run(tmp_path / "run", **SAVED)
    assert main(["optimize", "-o", str(out), "--quiet"]) == 2
    assert "--resume continues it, --force starts over" in capsys.readouterr().err


# ---- --resume: which options it reports as ignored ------------------------------------------------------------

def test_cli_resume_with_no_options_warns_of_nothing(tmp_path, stub_search, capsys):
    """The defaults of options the user never typed are not "ignored" options."""
    from nacos.cli import main

    out = _saved_run(tmp_path / "opt3", **SAVED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["optimize", "-o", str(out), "--resume", "--quiet"]) == 0
    assert not [w for w in caught if "ignored" in str(w.message)]
    assert "ignored" not in capsys.readouterr().err
    assert stub_search[0].budget_minutes == 0.3 and stub_search[0].epochs == 1


def test_cli_resume_names_every_option_given_that_differs_in_one_plain_line(tmp_path, stub_search, capsys):
    from nacos.cli import main

    out = _saved_run(tmp_path / "opt3", **SAVED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["optimize", "-o", str(out), "--resume", "--quiet", "--space", "mbv2", "--latency-max-ms", "5",
                     "--epochs", "1", "--budget-minutes", "2", "--baseline"]) == 0
    assert not [w for w in caught if "ignored" in str(w.message)]  # said once, as the CLI says things
    err = [line for line in capsys.readouterr().err.splitlines() if "ignored" in line]
    assert err == [f"nacos optimize: warning: resuming {out}: the saved run's settings are kept; ignored: "
                   "--space mbv2 (kept hyt), --budget-minutes 2 (kept 0.3), --latency-max-ms 5 (kept none), "
                   "--baseline (kept off)"], err  # --epochs 1 is what the run has: not ignored
    cfg = stub_search[0]
    assert (cfg.space, cfg.latency_max_ms, cfg.budget_minutes, cfg.baseline) == ("hyt", None, 0.3, False)


def test_api_resume_warns_only_of_arguments_passed_that_differ(tmp_path, stub_search):
    import nacos

    out = _saved_run(tmp_path / "run", **SAVED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nacos.optimize(out=out, resume=True)
        nacos.optimize("hyt", out=out, resume=True, epochs=1)  # what the run has
    assert not caught, [str(w.message) for w in caught]
    with pytest.warns(UserWarning, match=r"ignored: space='mbv2' \(kept 'hyt'\), latency_max_ms=5\.0 \(kept None\)"):
        nacos.optimize("mbv2", out=out, resume=True, latency_max_ms=5.0)
    assert all(cfg.space == "hyt" and cfg.latency_max_ms is None for cfg in stub_search)
