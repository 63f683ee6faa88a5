"""Progress of long jobs on stderr, which is the job's log: one helper instead of ad-hoc prints.

A job's log is a file that a reader opens while the job runs (``tail -f``), so progress is plain
lines, not a redrawn bar: ``[tag] message``. A :class:`Ticker` counts units of work (batches,
radii, queries, basin-hopping steps) and writes a line at the first unit, then at most every
``every`` seconds, and at the last, with the rate and, when the total is known, the time left.
"""

from __future__ import annotations

import sys
import time

# Seconds between two lines of one ticker: often enough to see a job move, rarely enough to keep
# the log readable (a lite job of an hour writes a few hundred lines at most).
EVERY = 15.0


def progress(tag: str, message: str) -> None:
    """One progress line ``[tag] message`` on stderr, flushed at once; through tqdm, so that a
    training's step bar is cleared first and redrawn after instead of swallowing the line."""
    from tqdm import tqdm

    tqdm.write(f"[{tag}] {message}", file=sys.stderr)
    sys.stderr.flush()


class Ticker:
    """Counts ``unit`` of work towards ``total`` (None when unknown, or an upper bound with
    ``bound=True``) and reports through :func:`progress`, throttled to one line per ``every`` seconds;
    ``enabled=False`` counts silently."""

    def __init__(self, tag: str, total: int | None, unit: str = "batches", every: float = EVERY, bound: bool = False, enabled: bool = True):
        self.tag, self.total, self.unit, self.every, self.bound, self.enabled = tag, total, unit, every, bound, enabled
        self.done = 0
        self.t0 = time.perf_counter()
        self._last: float | None = None

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        final = self.total is not None and self.done >= self.total
        if self.enabled and (self._last is None or final or now - self._last >= self.every):
            self._last = now
            progress(self.tag, self.line(now - self.t0, note))

    def line(self, elapsed: float, note: str = "") -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            head = f"{self.done} {self.unit}"
        else:
            head = f"{self.done}/{'<=' if self.bound else ''}{self.total} {self.unit}"
            if rate > 0 and self.done < self.total:
                head += f", {(self.total - self.done) / rate:.0f} s left{' at most' if self.bound else ''}"
        return f"{head}, {elapsed:.0f} s, {rate:.2f} {self.unit}/s" + (f"; {note}" if note else "")


def epoch_summary(metrics: dict[str, float]) -> str:
    """An epoch's mean metrics as words: accuracies (``*acc``, fractions) in %, the rest as numbers."""
    parts = []
    for k, v in metrics.items():
        if k == "epoch" or not isinstance(v, int | float):
            continue
        parts.append(f"{k} {100 * v:.2f}%" if k.endswith("acc") else f"{k} {v:.4g}")
    return ", ".join(parts)
