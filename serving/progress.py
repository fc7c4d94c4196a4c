"""Progress display shared by both batch engines (:mod:`journey_stage.serving.local` and
:mod:`journey_stage.serving.spark`): the same code runs with and without a progress bar."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

Progress = Callable[[], object]  # a factory of rich.progress.Progress (journey_stage.cli.progress_bar)


def open_bar(progress: Progress | None):
    """A context manager giving the progress bar (``progress()``), or ``None`` without one."""
    return progress() if progress is not None else nullcontext(None)


class Tasks:
    """Thin wrapper so the code reads the same with and without a progress bar."""

    def __init__(self, bar):
        self.bar = bar

    def add(self, description: str, total: int | None):
        return self.bar.add_task(description, total=total) if self.bar is not None else None

    def advance(self, task, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(task, n)
