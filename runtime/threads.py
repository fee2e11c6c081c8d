"""Adaptive decode threads: step down when a core is taken, step back up when it is free.

llama.cpp's CPU threads wait for each other at every layer, so when another
process holds one of the cores the whole token waits for the thread that lost
its core: measured here, a CPU-bound job beside a 2-thread server took decode
from ~27 tok/s on 1 thread to 1.3 tok/s on 2 (docs/server.md). Phones and
laptops always run other work, so the engine lets this governor choose the
thread count from what each count actually delivers, instead of trusting the
core count (the default policy, ``runtime.api.limits.DEFAULT_THREAD_POLICY``).

The rule, on the time of each single-token decode step:
- start at the maximum count (on a free machine the fastest);
- per window of ``window`` steps, take the median seconds per token at the
  current count and keep the best median seen at each count;
- a *trial* runs one window at a neighbouring count (one fewer, or one more
  when below the maximum) and is kept only if it is at least ``gain`` faster
  than the window before it, else the count goes back — at once, as soon as the
  trial has used a whole window's worth of the old time (so probing a collapsed
  count costs at most about one normal window);
- a trial starts right after the first window (contention present from the
  start), at once when a window is ``collapse`` times slower than the best seen
  at the current count, and otherwise after ``explore_every`` tokens (contention
  that came or went). Each trial that loses doubles that interval, up to
  ``explore_max``, so a machine whose best count holds pays less and less for
  probing; a kept trial or a collapse puts it back to ``explore_every``.

Prefill (multi-token batches) runs on ``settled``: the count the governor holds
outside a trial. Its time per token depends on the batch length and the KV
position, so prefill calls do not compare with each other the way decode steps
do; but the cause of a collapse (threads waiting at a barrier for one that lost
its core) is the same, so the count decode found is the one prefill uses.

No library does this (llama.cpp takes a fixed count; the OS scheduler does not
know the threads wait on each other), hence hand-written; it is pure logic on
observed durations, tested on synthetic timings.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThreadPolicy:
    """How the governor judges. On a free machine it costs one trial window (cut short
    after a normal window's time) per probe interval, which starts at ``explore_every``
    tokens and doubles after each losing trial up to ``explore_max``."""

    max_threads: int
    min_threads: int = 1
    window: int = 8
    explore_every: int = 256
    explore_max: int = 4096
    collapse: float = 2.5
    gain: float = 0.05


@dataclass(frozen=True)
class ThreadChange:
    """One switch of the count: at which decode step, from and to which count, and why
    (``trial``: a probe starts; ``kept``: a trial won; ``back``: a trial lost)."""

    step: int
    before: int
    after: int
    reason: str

    def to_dict(self) -> dict:
        return {"step": self.step, "from": self.before, "to": self.after, "reason": self.reason}


@dataclass
class ThreadGovernor:
    """Chooses the decode thread count from observed step times (``observe``)."""

    policy: ThreadPolicy
    threads: int = 0
    best: dict[int, float] = field(default_factory=dict)  # threads -> best window median (s/token)
    changes: int = 0
    steps: int = 0
    interval: int = 0  # tokens between exploring trials now (backs off while the choice holds)
    history: deque = field(default_factory=lambda: deque(maxlen=32))  # the latest ThreadChange records
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
        if not 1 <= p.explore_every <= p.explore_max:
            raise ValueError(f"thread policy needs 1 <= explore_every <= explore_max, got {p}")
        self.threads = self.threads or p.max_threads
        self.interval = self.interval or p.explore_every

    @property
    def settled(self) -> int:
        """The count held outside a trial (what prefill runs on)."""
        return self._trial_from if self._trial_from is not None else self.threads

    def observe(self, seconds: float) -> int | None:
        """Record one decode step's duration; returns the new thread count when it changes."""
        self.steps += 1
        self._samples.append(seconds)
        if (self._trial_from is not None and self._last_median is not None
                and sum(self._samples) > self.policy.window * self._last_median):
            # the trial has already spent a whole window's worth of time: it cannot win
            return self._end_trial(won=False)
        if len(self._samples) < self.policy.window:
            return None
        median = statistics.median(self._samples)
        self._samples.clear()
        self._windows += 1
        self._since_trial += self.policy.window
        n = self.threads
        self.best[n] = min(self.best.get(n, median), median)
        if self._trial_from is not None:  # this window was a trial at n
            before, self._last_median = self._last_median, median
            return self._end_trial(won=before is not None and median < before * (1 - self.policy.gain))
        previous, self._last_median = self._last_median, median
        collapsed = median > self.policy.collapse * self.best[n] and previous is not None
        if collapsed:
            self.interval = self.policy.explore_every  # conditions changed: look closely again
        if self._windows == 1 or collapsed or self._since_trial >= self.interval:
            return self._trial(down_only=collapsed or self._windows == 1)
        return None

    def _end_trial(self, won: bool) -> int | None:
        origin, self._trial_from = self._trial_from, None
        if won:
            self.interval = self.policy.explore_every
            self.history.append(ThreadChange(self.steps, origin, self.threads, "kept"))
            return None
        self.interval = min(self.interval * 2, self.policy.explore_max)
        return self._set(origin, "back")

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
        return self._set(target, "trial")

    def _set(self, n: int, reason: str) -> int | None:
        if n == self.threads:
            return None
        self.history.append(ThreadChange(self.steps, self.threads, n, reason))
        self.threads = n
        self.changes += 1
        self._samples.clear()
        return n

    def describe(self) -> dict:
        """What the edges show: the policy, the counts in force (decode, and prefill's
        ``batch_threads``), the probe interval, the best ms/token per count, the last switches."""
        return {"policy": "adaptive", "threads": self.threads, "batch_threads": self.settled,
                "max_threads": self.policy.max_threads, "changes": self.changes,
                "explore_interval": self.interval,
                "best_ms_per_token": {str(k): round(v * 1000, 2) for k, v in sorted(self.best.items())},
                "recent_changes": [c.to_dict() for c in list(self.history)[-4:]]}
