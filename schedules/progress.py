"""A rich progress display for tuning: one bar for the trial budget, one line per task with its best latency.

Written to stderr (so ``--json`` output on stdout stays clean) and only when enabled.
"""

from __future__ import annotations


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


class TuneProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None
        self._rows: dict[int, int] = {}

    def start(self, tasks, trials: int) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._tasks = list(tasks)
        self._total = self._bar.add_task("trials", total=trials, completed=self._done())
        for t in self._tasks:
            self._rows[id(t)] = self._bar.add_task(self._describe(t), total=None, completed=len(t.measured))
        self._bar.start()

    def _done(self) -> int:
        return sum(len(t.measured) for t in self._tasks)

    @staticmethod
    def _describe(t) -> str:
        best = t.best
        name = t.workload.name if len(t.workload.name) <= 48 else t.workload.name[:45] + "..."
        return (f"  {name} ×{t.weight}  best {fmt_seconds(best[1] if best else None)}"
                f"  (default {fmt_seconds(t.default_latency)})")

    def update(self, task) -> None:
        if self._bar is None:
            return
        self._bar.update(self._total, completed=self._done())
        row = self._rows.get(id(task))
        if row is not None:
            self._bar.update(row, description=self._describe(task), completed=len(task.measured))

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
