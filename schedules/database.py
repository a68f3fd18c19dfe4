"""The tuning database: every measurement, kept in SQLite (stdlib ``sqlite3``).

Rows are keyed by (workload key, schedule point). A workload key hashes the op instructions, shapes, dtypes and
the target (:mod:`schedules.workload`), so the same kernel met again — in another model or another candidate
architecture — finds its measurements here and is never measured twice.

Each record is committed as soon as it is measured, failures included, in WAL mode: a tune killed at any moment
loses nothing it had measured, and a rerun picks up every prior measurement. A measurement is never rewritten;
re-measuring a point (the tuner does so for its best candidates, as a single measurement on a busy machine is
noisy) adds *repeats*, and the point's ``estimate`` is what ranks it: its first measurement until it is re-measured,
then the median of the re-measurements alone. The first measurement is what made a candidate look best, so it is
biased low (the winner's curse: on this shared machine re-measured points moved by a median of 10–17 % between
measurements minutes apart, 0.14–0.22 log2 in bench/cost_model_quality.py's noise view, and the best of hundreds
of single measurements is mostly a lucky one); the tuner re-measures its finalists side by side with the default,
and only those later measurements decide.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import time
import urllib.parse
from typing import Any

from schedules.measure import MeasureResult
from schedules.space import Point
from schedules.workload import Workload

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS workloads (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, target TEXT NOT NULL, graph TEXT NOT NULL,
    flops REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workload TEXT NOT NULL REFERENCES workloads(key),
    point TEXT NOT NULL,
    latency REAL,              -- median seconds; NULL for a failed measurement
    costs TEXT NOT NULL,       -- JSON list: seconds of each repeat
    error TEXT,
    build_s REAL, run_s REAL, runner TEXT, created REAL NOT NULL,
    estimate REAL,             -- the latency until re-measured, then the repeats' median (Database.refine)
    UNIQUE (workload, point));
CREATE INDEX IF NOT EXISTS measurements_best ON measurements (workload, estimate);
CREATE TABLE IF NOT EXISTS repeats (
    id INTEGER PRIMARY KEY AUTOINCREMENT, workload TEXT NOT NULL, point TEXT NOT NULL,
    costs TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS compiled (  -- machine-code counts of a measured build (schedules.compiled), JSON
    workload TEXT NOT NULL, point TEXT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY (workload, point));
"""


class MixedCachesError(ValueError):
    """Measurements with cold caches asked of a database measured with warm ones, or the other way round."""


class Database:
    """An SQLite file of workloads and measurements (``path`` is created if missing).

    >>> db = Database("tune.db"); db.best(workload)            # (Point, seconds) or None
    >>> nacos.compile(graph, schedules=db.schedules(graph))     # the best measured schedule per kernel
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False) -> None:
        self.path = str(path)
        self._workloads: dict[str, Workload] = {}
        if readonly:
            self._conn = _connect_readonly(self.path)
            # a database written before machine-code counts were kept has no such table (and may not get one here)
            self._compiled = bool(self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                                     "name = 'compiled'").fetchone())
            return
        self._compiled = True
        self._conn = sqlite3.connect(self.path, timeout=60.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
        self._conn.executescript(_SCHEMA)
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self._conn.commit()

    # ---- writing ---------------------------------------------------------------------------------------------
    def add_workload(self, w: Workload) -> None:
        if w.key in self._workloads:
            return
        self._conn.execute("INSERT OR IGNORE INTO workloads VALUES (?, ?, ?, ?, ?, ?)",
                           (w.key, w.name, w.target, w.graph_json, float(w.flops), time.time()))
        self._conn.commit()
        self._workloads[w.key] = w

    def claim_caches(self, mode: str) -> None:
        """Record that measurements go into this database with ``mode`` caches: ``"warm"`` (the default: repeats
        run back to back) or ``"cold"`` (a runner's ``cache_flush``). The two do not compare (flushed data comes
        from memory), so one database holds one kind: a :class:`MixedCachesError` names the mismatch. A database
        written before the mode was recorded counts as warm if it holds measurements."""
        if mode not in ("warm", "cold"):
            raise ValueError(f"caches {mode!r}: expected 'warm' or 'cold'")
        query = "SELECT value FROM meta WHERE key = 'caches'"
        row = self._conn.execute(query).fetchone()
        if row is None:  # OR IGNORE: another process may have claimed it meanwhile, and its mode stands
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('caches', ?)", ("warm" if self.count() else mode,))
            self._conn.commit()
            row = self._conn.execute(query).fetchone()
        if row[0] != mode:
            hint = "without --cache-flush (cache_flush=False)" if row[0] == "warm" else \
                "with --cache-flush (cache_flush=True)"
            raise MixedCachesError(f"{self.path}: its measurements were taken with {row[0]} caches and these "
                                   f"would be {mode}; the two do not compare. Measure {hint}, or use another "
                                   "database")

    def add(self, r: MeasureResult) -> bool:
        """Persist one measurement now (one commit per record). False if this point was already recorded."""
        latency = float(r.latency) if r.ok else None  # float(): numpy scalars would be stored as blobs
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO measurements (workload, point, latency, costs, error, build_s, run_s, runner,"
            " created, estimate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.workload_key, r.point.to_json(), latency, json.dumps([float(c) for c in r.costs]), r.error,
             float(r.build_s), float(r.run_s), r.runner, float(r.created), latency))
        if cur.rowcount == 1 and r.compiled:
            self._conn.execute("INSERT OR REPLACE INTO compiled VALUES (?, ?, ?)",
                               (r.workload_key, r.point.to_json(), r.compiled))
        self._conn.commit()
        return cur.rowcount == 1

    def add_compiled(self, workload: Workload | str, point: Point, counts: str) -> None:
        """Store the machine-code counts of a measured point built again (e.g. to fill a database measured
        before they were kept: bench/cost_model_quality.py ``--model xgb-compiled``)."""
        key = workload if isinstance(workload, str) else workload.key
        self._conn.execute("INSERT OR REPLACE INTO compiled VALUES (?, ?, ?)", (key, point.to_json(), counts))
        self._conn.commit()

    def refine(self, r: MeasureResult) -> float | None:
        """Add a successful re-measurement of an already measured point; returns the point's new estimate."""
        if not r.ok:
            return self.latency(r.workload_key, r.point)
        point = r.point.to_json()
        row = self._conn.execute("SELECT 1 FROM measurements WHERE workload = ? AND point = ? AND latency IS"
                                 " NOT NULL", (r.workload_key, point)).fetchone()
        if row is None:
            return None
        self._conn.execute("INSERT INTO repeats (workload, point, costs, created) VALUES (?, ?, ?, ?)",
                           (r.workload_key, point, json.dumps([float(c) for c in r.costs]), float(r.created)))
        repeats = self._costs(r.workload_key, point, [])
        estimate = float(statistics.median(repeats))  # the first measurement left out: see the module docstring
        self._conn.execute("UPDATE measurements SET estimate = ? WHERE workload = ? AND point = ?",
                           (estimate, r.workload_key, point))
        self._conn.commit()
        return estimate

    def _costs(self, key: str, point: str, first: list) -> list[float]:
        costs = list(first)
        for (c,) in self._conn.execute("SELECT costs FROM repeats WHERE workload = ? AND point = ? ORDER BY id",
                                       (key, point)):
            costs.extend(json.loads(c))
        return costs

    # ---- reading ---------------------------------------------------------------------------------------------
    def workload(self, key: str) -> Workload | None:
        row = self._conn.execute("SELECT graph, target FROM workloads WHERE key = ?", (key,)).fetchone()
        return Workload(row[0], row[1]) if row else None

    def workloads(self, target: str | None = None) -> list[Workload]:
        sql, args = "SELECT graph, target FROM workloads", ()
        if target is not None:
            sql, args = sql + " WHERE target = ?", (target,)
        return [Workload(g, t) for g, t in self._conn.execute(sql + " ORDER BY created", args)]

    def records(self, workload: Workload | str, ok_only: bool = False) -> list[MeasureResult]:
        """Measurements of a workload, oldest first; ``latency`` is the estimate, ``costs`` include repeats."""
        key = workload if isinstance(workload, str) else workload.key
        source = ("c.counts FROM measurements m LEFT JOIN compiled c ON c.workload = m.workload AND c.point = m.point"
                  if self._compiled else "NULL FROM measurements m")
        sql = ("SELECT m.point, estimate, m.costs, error, build_s, run_s, runner, created, " + source
               + " WHERE m.workload = ?" + (" AND latency IS NOT NULL" if ok_only else "") + " ORDER BY m.id")
        rows = list(self._conn.execute(sql, (key,)))
        repeated = {p for (p,) in self._conn.execute("SELECT DISTINCT point FROM repeats WHERE workload = ?",
                                                     (key,))}
        return [MeasureResult(key, Point.from_json(p), lat,
                              tuple(self._costs(key, p, json.loads(c)) if p in repeated else json.loads(c)),
                              err, b or 0.0, r or 0.0, runner or "", created, counts)
                for p, lat, c, err, b, r, runner, created, counts in rows]

    def measured(self, workload: Workload | str) -> set[Point]:
        key = workload if isinstance(workload, str) else workload.key
        return {Point.from_json(p) for (p,) in
                self._conn.execute("SELECT point FROM measurements WHERE workload = ?", (key,))}

    def repeated(self, workload: Workload | str) -> set[Point]:
        """The points of ``workload`` that were re-measured (:meth:`refine`)."""
        key = workload if isinstance(workload, str) else workload.key
        return {Point.from_json(p) for (p,) in
                self._conn.execute("SELECT DISTINCT point FROM repeats WHERE workload = ?", (key,))}

    def count(self, workload: Workload | str | None = None) -> int:
        if workload is None:
            return self._conn.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
        key = workload if isinstance(workload, str) else workload.key
        return self._conn.execute("SELECT COUNT(*) FROM measurements WHERE workload = ?", (key,)).fetchone()[0]

    def best(self, workload: Workload | str) -> tuple[Point, float] | None:
        key = workload if isinstance(workload, str) else workload.key
        row = self._conn.execute("SELECT point, estimate FROM measurements WHERE workload = ? AND estimate IS NOT"
                                 " NULL ORDER BY estimate LIMIT 1", (key,)).fetchone()
        return (Point.from_json(row[0]), row[1]) if row else None

    def latency(self, workload: Workload | str, point: Point) -> float | None:
        key = workload if isinstance(workload, str) else workload.key
        row = self._conn.execute("SELECT estimate FROM measurements WHERE workload = ? AND point = ?",
                                 (key, point.to_json())).fetchone()
        return row[0] if row else None

    # ---- use in the compiler ---------------------------------------------------------------------------------
    def schedules(self, graph: Any = None, target: Any = None, layout: str | None = None,
                  chains: bool | None = None):
        """A ``schedules=`` provider for :func:`nacos.compiler.compile`: the best measured schedule per group.

        With ``graph``, groups are matched by their exact workload; without it, a group's input types are read
        from the PrimFunc's buffers (rank-0 inputs then look like shape (1,) and may not match).
        Groups with no successful measurement get ``None`` (the default schedule). ``layout`` must be the one
        the model is compiled with (default: :func:`schedules.fusion.default_layout`), ``chains`` too
        (:func:`schedules.fusion.partition`).
        """
        from schedules.space import DEFAULT_SCHEDULE, space_for
        from schedules.workload import target_key, workload_from_group, workloads_from_graph

        tkey = target_key(target)
        # keyed by the group's nodes: a chain and the 1×1 conv kernel it absorbs write the same output
        by_nodes = {_members(g): w for g, w in workloads_from_graph(graph, tkey, layout, chains)} \
            if graph is not None else {}

        def provide(group, func):
            w = by_nodes.get(_members(group)) or workload_from_group(group, _func_input_types(func), tkey)
            found = self.best(w)
            if found is None or found[0] == DEFAULT_SCHEDULE:
                return None  # the compiler's own default schedule
            try:
                return space_for(w).apply(func, found[0]).mod
            except Exception:  # noqa: BLE001 — a schedule that no longer applies: fall back to the default
                return None

        return provide

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _connect_readonly(path: str) -> sqlite3.Connection:
    """Open an existing database without writing to it (a file or folder the user may not write to)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such tuning database")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    # a WAL database in a folder where its -wal/-shm files cannot be created is read as it is on disk (immutable)
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + query, uri=True, timeout=60.0)
        try:
            conn.execute("SELECT COUNT(*) FROM measurements").fetchone()
            return conn
        except sqlite3.DatabaseError as e:
            conn.close()
            if "no such table" in str(e) or not isinstance(e, sqlite3.OperationalError):
                raise ValueError(f"{path}: not a tuning database ({e})") from None
    raise ValueError(f"{path}: cannot be opened read-only")


def _members(group) -> tuple[str, ...]:
    return tuple(n.name for n in group.nodes)


def _func_input_types(func) -> list:
    from ir.graph import TensorType

    types = []
    for param in list(func.params)[:-1]:
        buf = func.buffer_map[param]
        types.append(TensorType(tuple(int(d) for d in buf.shape), str(buf.dtype)))
    return types

