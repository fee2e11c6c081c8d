"""Adaptive decode threads: step down when a core is taken, step back up when it is free.

llama.cpp's CPU threads wait for each other at every layer, so when another
process holds one of the cores the whole token waits for the thread that lost
its core: measured here, a CPU-bound job beside a 2-thread server took decode
from ~27 tok/s on 1 thread to 1.3 tok/s on 2 (docs/server.md). Phones and
laptops always run other work, so a long-lived engine (``thinkling serve``, the
bridge) lets this governor choose the thread count from what each count
actually delivers, instead of trusting the core count.

The rule, on the time of each single-token decode step:
- per window of ``window`` steps, take the median seconds per token at the
  current count and keep the best median seen at each count;
- a *trial* runs one window at a neighbouring count (one fewer, or one more
  when below the maximum) and is kept only if it is at least ``gain`` faster
  than the window before it, else the count goes back — at once, as soon as the
  trial has used a whole window's worth of the old time (so probing a collapsed
  count costs at most about one normal window);
- a trial starts right after the first window (contention present from the
  start), every ``explore_every`` tokens (contention that came or went), and at
  once when a window is ``collapse`` times slower than the best seen at the
  current count.

No library does this (llama.cpp takes a fixed count; the OS scheduler does not
know the threads wait on each other), hence hand-written; it is pure logic on
observed durations, tested on synthetic timings.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThreadPolicy:
    """How the governor judges; the defaults cost about one 8-token window at a
    neighbouring count per ``explore_every`` tokens when nothing is contended."""

    max_threads: int
    min_threads: int = 1
    window: int = 8
    explore_every: int = 256
    collapse: float = 2.5
    gain: float = 0.05


@dataclass
class ThreadGovernor:
    policy: ThreadPolicy
    threads: int = 0
    best: dict[int, float] = field(default_factory=dict)  # threads -> best window median (s/token)
    changes: int = 0
    _samples: list[float] = field(default_factory=list)
    _since_trial: int = 0
    _trial_from: int | None = None
    _last_median: float | None = None
    _windows: int = 0
    _up_next: bool = True

    def __post_init__(self) -> None:
        p = self.policy
        if not 1 <= p.min_threads <= p.max_threads:
            raise ValueError(f"thread policy needs 1 <= min_threads <= max_threads, got {p}")
        self.threads = self.threads or p.max_threads

    def observe(self, seconds: float) -> int | None:
        """Record one decode step's duration; returns the new thread count when it changes."""
        self._samples.append(seconds)
        if (self._trial_from is not None and self._last_median is not None
                and sum(self._samples) > self.policy.window * self._last_median):
            # the trial has already spent a whole window's worth of time: it cannot win
            origin, self._trial_from = self._trial_from, None
            return self._set(origin)
        if len(self._samples) < self.policy.window:
            return None
        median = statistics.median(self._samples)
        self._samples.clear()
        self._windows += 1
        self._since_trial += self.policy.window
        n = self.threads
        self.best[n] = min(self.best.get(n, median), median)
        if self._trial_from is not None:  # this window was a trial at n
            origin, before = self._trial_from, self._last_median
            self._trial_from = None
            self._last_median = median
            if before is not None and median < before * (1 - self.policy.gain):
                return None  # the trial count is faster: stay
            return self._set(origin)
        previous, self._last_median = self._last_median, median
        collapsed = median > self.policy.collapse * self.best[n] and previous is not None
        if self._windows == 1 or collapsed or self._since_trial >= self.policy.explore_every:
            return self._trial(down_only=collapsed or self._windows == 1)
        return None

    def _trial(self, down_only: bool) -> int | None:
        p, n = self.policy, self.threads
        up = n < p.max_threads and not down_only and self._up_next
        down = n > p.min_threads
        self._up_next = not self._up_next
        target = n + 1 if up else n - 1 if down else n + 1 if n < p.max_threads and not down_only else None
        self._since_trial = 0
        if target is None:
            return None
        self._trial_from = n
        return self._set(target)

    def _set(self, n: int) -> int | None:
        if n == self.threads:
            return None
        self.threads = n
        self.changes += 1
        self._samples.clear()
        return n

    def describe(self) -> dict:
        """What the edges show: the policy, the count in force, the best ms/token per count."""
        return {"policy": "adaptive", "threads": self.threads, "max_threads": self.policy.max_threads,
                "changes": self.changes,
                "best_ms_per_token": {str(k): round(v * 1000, 2) for k, v in sorted(self.best.items())}}
