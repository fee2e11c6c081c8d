"""The adaptive-thread governor on synthetic step times (no clock, no model)."""

from __future__ import annotations

from collections import deque

import pytest

from thinkling.runtime.threads import ThreadGovernor, ThreadPolicy


def run(gov, cost, steps):
    """Feed ``steps`` decode steps whose duration is ``cost(threads)``; returns the counts used."""
    used = []
    for _ in range(steps):
        used.append(gov.threads)
        gov.observe(cost(gov.threads))
    return used


FREE = {1: 0.040, 2: 0.025}.get  # two free cores: 2 threads are faster
BUSY = {1: 0.040, 2: 0.700}.get  # one core taken: 2 threads collapse


def test_free_cores_keep_the_maximum_and_trials_are_rare():
    gov = ThreadGovernor(ThreadPolicy(max_threads=2))
    used = run(gov, FREE, 2000)
    assert used[-1] == 2 and used.count(1) / len(used) < 0.05  # one 8-step trial per 256 steps at most


def test_contention_from_the_start_steps_down_after_one_window():
    gov = ThreadGovernor(ThreadPolicy(max_threads=2))
    used = run(gov, BUSY, 1000)
    assert used[8:16] == [1] * 8 and used[-1] == 1
    # probing 2 threads again (every 256 steps) is cut short after about one normal window's time
    after = used[8:]
    assert after.count(2) <= 3 * (len(after) // 256 + 1)
    assert sum(BUSY(n) for n in after) < len(after) * 0.040 * 1.1


def test_collapse_mid_run_is_detected_and_recovery_is_found():
    gov = ThreadGovernor(ThreadPolicy(max_threads=2))
    run(gov, FREE, 100)
    assert gov.threads == 2
    run(gov, BUSY, 40)  # a job starts beside the engine
    assert gov.threads == 1
    used = run(gov, FREE, 600)  # ... and ends: a later trial goes back up and stays
    assert used[-1] == 2 and gov.changes >= 3
    assert gov.describe()["best_ms_per_token"] == {"1": 40.0, "2": 25.0}


def test_more_cores_settle_on_the_fastest_count():
    cost = {1: 0.08, 2: 0.045, 3: 0.035, 4: 0.06}.get  # the fourth core is busy
    gov = ThreadGovernor(ThreadPolicy(max_threads=4))
    used = run(gov, cost, 3000)
    assert used[-1] == 3 and used[-500:].count(3) > 400


def test_bad_policy_is_refused():
    with pytest.raises(ValueError):
        ThreadGovernor(ThreadPolicy(max_threads=2, min_threads=3))


def trials(gov) -> list[int]:
    """Decode steps at which a probe began."""
    return [c.step for c in gov.history if c.reason == "trial"]


def test_losing_trials_back_off_exponentially_on_a_free_machine():
    p = ThreadPolicy(max_threads=2)
    gov = ThreadGovernor(p, history=deque(maxlen=1000))
    used = run(gov, FREE, 20_000)
    starts = trials(gov)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(b >= a for a, b in zip(gaps, gaps[1:])), gaps  # intervals never shrink while 2 holds
    assert gaps[-1] >= p.explore_max and gov.interval == p.explore_max  # ... and reach the cap
    assert len(starts) < 20_000 // p.explore_every // 2  # far fewer probes than a fixed 256-token interval
    assert used[-1] == 2 and used.count(1) / len(used) < 0.005
    assert all(c.reason in ("trial", "back") for c in gov.history)  # every probe lost


def test_a_collapse_resets_the_back_off_and_recovery_still_comes():
    p = ThreadPolicy(max_threads=2)
    gov = ThreadGovernor(p)
    run(gov, FREE, 10_000)
    assert gov.interval == p.explore_max
    run(gov, BUSY, 40)  # a job starts beside the engine after a long quiet spell
    assert gov.threads == 1 and gov.history[-1].reason == "kept"
    used = run(gov, FREE, 3 * p.explore_every)  # ... and ends: the first probe up finds 2 again
    assert used.index(2) <= p.explore_every + p.window and used[-1] == 2
    assert gov.interval <= 2 * p.explore_every  # back-off restarted from the base interval


def test_prefill_follows_the_settled_count_not_a_trial():
    gov = ThreadGovernor(ThreadPolicy(max_threads=2))
    run(gov, FREE, 8)  # the first window ends: a trial at 1 thread starts
    assert gov.threads == 1 and gov.settled == 2 and gov.describe()["batch_threads"] == 2
    run(gov, FREE, 8)  # the trial lost
    assert gov.threads == 2 and gov.settled == 2
    run(gov, BUSY, 40)
    assert gov.threads == gov.settled == 1  # a step-down that held moves prefill too


def test_switches_are_recorded_with_their_reason():
    gov = ThreadGovernor(ThreadPolicy(max_threads=2))
    run(gov, BUSY, 16)
    assert [c.to_dict() for c in gov.history] == [{"step": 8, "from": 2, "to": 1, "reason": "trial"},
                                                  {"step": 16, "from": 2, "to": 1, "reason": "kept"}]
    assert gov.describe()["recent_changes"][-1]["reason"] == "kept"


def test_bad_back_off_is_refused():
    with pytest.raises(ValueError):
        ThreadGovernor(ThreadPolicy(max_threads=2, explore_every=512, explore_max=256))
