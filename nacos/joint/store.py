"""What a joint search remembers, in the same SQLite file as the schedule database (``opt_`` tables).

* ``opt_evaluations`` — one row per individual evaluated (architecture hash + schedule genes): the objective
  values the optimizer was told. Its row count is the run's *evaluations count*; an individual met again is a
  cache hit, not a new evaluation.
* ``opt_accuracy`` — trainings, keyed by architecture hash and training setting, so an architecture is trained
  once per setting whatever schedules it is paired with, in this run or a resumed one.
* ``opt_measured`` — individuals measured for real on the target (whole compiled model), with their artifact.
* ``opt_meta`` — the run's configuration and the wall time it has used (a resumed run gets what is left).

Every row is committed when it is written (WAL mode, as the schedule database), so a run killed at any moment
loses no evaluation, training or measurement.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS opt_meta (run TEXT, key TEXT, value TEXT, PRIMARY KEY (run, key));
CREATE TABLE IF NOT EXISTS opt_evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, key TEXT NOT NULL, archid TEXT NOT NULL,
    generation INTEGER, objectives TEXT NOT NULL, info TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (run, key));
CREATE TABLE IF NOT EXISTS opt_accuracy (
    archid TEXT NOT NULL, setting TEXT NOT NULL, val_accuracy REAL, test_accuracy REAL, seconds REAL,
    info TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (archid, setting));
CREATE TABLE IF NOT EXISTS opt_measured (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, key TEXT NOT NULL, row TEXT NOT NULL,
    created REAL NOT NULL, UNIQUE (run, key));
"""


class RunStore:
    """The ``opt_`` tables of one SQLite file; ``run`` names the search ("joint", "two-stage") within it."""

    def __init__(self, path: str, run: str = "joint") -> None:
        self.path, self.run = str(path), run
        self._conn = sqlite3.connect(self.path, timeout=60.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()

    def training_seconds(self) -> float:
        """Seconds spent training, by every process of the run (a resumed one included)."""
        return float(self._conn.execute("SELECT COALESCE(SUM(seconds), 0) FROM opt_accuracy").fetchone()[0])

    # ---- meta ----------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM opt_meta WHERE run = ? AND key = ?", (self.run, key)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self._conn.execute("INSERT OR REPLACE INTO opt_meta VALUES (?, ?, ?)", (self.run, key, json.dumps(value)))
        self._conn.commit()

    # ---- evaluations ---------------------------------------------------------------------------------------
    def evaluation(self, key: str) -> tuple[list[float], dict] | None:
        row = self._conn.execute("SELECT objectives, info FROM opt_evaluations WHERE run = ? AND key = ?",
                                 (self.run, key)).fetchone()
        return (json.loads(row[0]), json.loads(row[1])) if row else None

    def add_evaluation(self, key: str, archid: str, generation: int, objectives: list[float], info: dict) -> None:
        self._conn.execute("INSERT OR IGNORE INTO opt_evaluations (run, key, archid, generation, objectives, info,"
                           " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (self.run, key, archid, generation, json.dumps(objectives), json.dumps(info), time.time()))
        self._conn.commit()

    def evaluations(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM opt_evaluations WHERE run = ?", (self.run,)).fetchone()[0]

    # ---- trainings -----------------------------------------------------------------------------------------
    def accuracy(self, archid: str, setting: str) -> dict | None:
        row = self._conn.execute("SELECT val_accuracy, test_accuracy, seconds, info FROM opt_accuracy WHERE "
                                 "archid = ? AND setting = ?", (archid, setting)).fetchone()
        if row is None:
            return None
        return {"val_accuracy": row[0], "test_accuracy": row[1], "seconds": row[2], **json.loads(row[3])}

    def add_accuracy(self, archid: str, setting: str, val: float, test: float, seconds: float,
                     info: dict | None = None) -> None:
        self._conn.execute("INSERT OR REPLACE INTO opt_accuracy VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (archid, setting, val, test, seconds, json.dumps(info or {}), time.time()))
        self._conn.commit()

    def trained(self, setting: str) -> list[tuple[str, float]]:
        """(archid, validation accuracy) of every architecture trained with ``setting``."""
        return list(self._conn.execute("SELECT archid, val_accuracy FROM opt_accuracy WHERE setting = ? "
                                       "ORDER BY created", (setting,)))

    # ---- real measurements ---------------------------------------------------------------------------------
    def measured_row(self, key: str) -> dict | None:
        row = self._conn.execute("SELECT row FROM opt_measured WHERE run = ? AND key = ?", (self.run, key)).fetchone()
        return json.loads(row[0]) if row else None

    def add_measured(self, key: str, row: dict) -> None:
        self._conn.execute("INSERT OR REPLACE INTO opt_measured (run, key, row, created) VALUES (?, ?, ?, ?)",
                           (self.run, key, json.dumps(row), time.time()))
        self._conn.commit()

    def measured(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._conn.execute(
            "SELECT row FROM opt_measured WHERE run = ? ORDER BY id", (self.run,))]

    def close(self) -> None:
        self._conn.close()
