"""Progress of a search on stderr: a time bar over the wall budget and one line per measured network.

``on_event`` (the Python API's hook) receives the same events as keyword arguments, display or not.
"""

from __future__ import annotations

from typing import Callable


class SearchProgress:
    def __init__(self, budget_s: float, enabled: bool = True, on_event: Callable[..., None] | None = None) -> None:
        self.budget_s, self.enabled, self.on_event = budget_s, enabled, on_event
        self._bar = self._task = self._console = None
        self.method = ""
        self.counts: dict = {}

    def start(self, method: str, elapsed: float) -> None:
        self.method = method
        if self.on_event:
            self.on_event(event="start", method=method, elapsed=elapsed)
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self._bar is None:
            self._console = Console(stderr=True)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self._console, transient=False)
            self._bar.start()
        self._task = self._bar.add_task(f"{method:>10}", total=self.budget_s, completed=min(elapsed, self.budget_s),
                                        info="starting")

    def update(self, elapsed: float, measured_row: dict | None = None, **counts) -> None:
        self.counts.update(counts)
        if self.on_event:
            self.on_event(event="progress", method=self.method, elapsed=elapsed, measured_row=measured_row,
                          **self.counts)
        if self._bar is None:
            return
        c = self.counts
        info = (f"gen {c.get('generation', 0)} · {c.get('evaluations', 0)} evals · "
                f"{c.get('measured', 0)} measured · front {c.get('front', 0)}")
        self._bar.update(self._task, completed=min(elapsed, self.budget_s), info=info)
        if measured_row is not None:
            r = measured_row
            if r.get("latency_ms"):
                self._console.print(f"  {self.method} {r['id']}: accuracy {r.get('accuracy', 0):.3f}  "
                                    f"latency {r['latency_ms']:.3g} ms (predicted {r['latency_predicted_ms']:.3g})  "
                                    f"{r['params']:,} params")
            else:
                self._console.print(f"  {self.method} {r['id']}: failed: {r.get('error')}")

    def note(self, text: str) -> None:
        if self.on_event:
            self.on_event(event="note", method=self.method, text=text)
        if self._console is not None:
            self._console.print(f"  {text}")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
