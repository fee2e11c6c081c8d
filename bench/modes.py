"""`bench modes`: accuracy and latency of each thinking mode on a labelled task set.

One row per mode: off, on, post, auto (all run for real through the engine),
plus two references computed from the measured per-query off/on outcomes:
random gating at auto's think rate (its expectation, and percentiles over
seeded draws) and the oracle that picks the cheaper correct mode per query.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams
from thinkling.runtime.thinking import ThinkingProfile, decision_dict

from .files import save_figure, write_text_atomic
from .stats import percentile
from .tasksets import TASKS_DIR, load_tasks, score  # noqa: F401  (TASKS_DIR, load_tasks: re-exported for callers)


@dataclass
class RunOptions:
    """How ``bench modes`` (and ``thinkling calibrate``) run a labelled task set."""

    max_tokens: int = 256  # per generation; reasoning included
    threads: int | None = None  # llama.cpp threads (None: the engine's default)
    limit: int | None = None  # use only N tasks (stratified by group)
    repeats: int = 5  # paired runs per query and mode; latency is the per-query median
    url: str | None = None  # a running ``thinkling serve``: every query goes over HTTP (bench modes)
    profile: str | None = None  # a thinking profile to use instead of the one beside the model (in process)


@dataclass
class Outcome:
    """One query in one mode."""

    question: str
    label: str
    mode: str
    answer: str
    reasoning_chars: int
    correct: bool
    latency_ms: float
    ttft_ms: float
    time_to_answer_ms: float
    tokens: int
    thought: bool
    decision: dict | None = None
    group: str = "all"


def _group(row: dict) -> str:
    # rows from load_tasks carry "group"; bare rows with "n_ops" get load_tasks' default
    return str(row.get("group") or (f"{row['n_ops']} ops" if "n_ops" in row else "all"))


def take(rows: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` tasks, stratified by group.

    The arithmetic sets are sorted by depth, so a plain prefix would be all
    one-operation problems; instead the first tasks of each group are taken in
    turn (groups in order of first appearance), keeping the file's order.
    """
    if limit is None or limit >= len(rows):
        return rows
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_group(r), []).append(r)
    picked: list[dict] = []
    for i in range(max(len(g) for g in groups.values())):
        for g in groups.values():
            if i < len(g) and len(picked) < limit:
                picked.append(g[i])
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted(picked, key=lambda r: order[id(r)])


def run_query(engine: Engine, task: dict, mode: str, max_tokens: int, **extra) -> Outcome:
    """Ask ``task["question"]`` in ``mode`` (greedy) and score the answer with the task's checker."""
    question = task["question"]
    req = GenerationRequest(messages=[Message("user", question)], max_tokens=max_tokens,
                            sampling=SamplingParams(temperature=0.0), think=mode, **extra)
    t0 = time.perf_counter()
    answer, reasoning, t_answer, tokens, last = [], [], None, 0, None
    for chunk in engine.stream(req):
        tokens += len(chunk.token_ids)
        if chunk.text:
            answer.append(chunk.text)
            t_answer = time.perf_counter()
        reasoning.append(chunk.reasoning)
        last = chunk
    t_end = time.perf_counter()
    text = "".join(answer).strip()
    tokens = tokens or last.timings.completion_tokens  # over HTTP, chunks carry no token ids
    decision = last.decision
    # post: the answer is usable before the rationale; others: when the answer text ends
    done_at = t_answer if t_answer is not None else t_end
    return Outcome(question=question, label=str(task["answer"]), mode=mode, answer=text,
                   reasoning_chars=len("".join(reasoning)), correct=score(task, text),
                   latency_ms=(t_end - t0) * 1000, ttft_ms=last.timings.ttft_ms,
                   time_to_answer_ms=(done_at - t0) * 1000, tokens=tokens,
                   thought=decision is not None and decision.thought and bool("".join(reasoning)),
                   decision=decision_dict(decision), group=_group(task))


def run_mode(engine: Engine, tasks: list[dict], mode: str, max_tokens: int) -> list[Outcome]:
    """``tasks`` asked once each in ``mode``."""
    return [run_query(engine, t, mode, max_tokens) for t in tasks]


def median_outcome(runs: list[Outcome]) -> Outcome:
    """One query's repeats: the first run's answer, each latency the median over the runs."""
    return replace(runs[0], latency_ms=statistics.median(o.latency_ms for o in runs),
                   ttft_ms=statistics.median(o.ttft_ms for o in runs),
                   time_to_answer_ms=statistics.median(o.time_to_answer_ms for o in runs))


def follow(engine: Engine, previous: dict) -> None:
    """Put ``previous``'s question in the KV cache (a one-token direct answer), so
    the next run starts as in use: after another question, not a cached copy of its own."""
    run_query(engine, previous, "off", 1)


def run_modes(engine: Engine, tasks: list[dict], modes: tuple[str, ...], max_tokens: int,
              repeats: int = 1) -> tuple[dict[str, list[Outcome]], int]:
    """Every mode on every task, ``repeats`` times, per query the median latency.

    Paired design: a query is run in all modes back to back (the order rotating
    from query to query and repeat to repeat), so a machine that slows down for
    a while weighs on every mode alike. Before each measured run the previous
    task's question is put in the KV cache (a one-token direct answer), so every
    mode starts as in use, after another question, never from the same
    question's cached prompt. Returns the outcomes and how many (query, mode)
    pairs answered differently between repeats (greedy decoding should make it 0).
    """
    runs: dict[str, list[Outcome]] = {m: [] for m in modes}
    unstable = 0
    for i, t in enumerate(tasks):
        prev = tasks[i - 1]
        got: dict[str, list[Outcome]] = {m: [] for m in modes}
        for r in range(repeats):
            k = (i + r) % len(modes)
            for m in modes[k:] + modes[:k]:
                follow(engine, prev)
                got[m].append(run_query(engine, t, m, max_tokens))
        for m in modes:
            unstable += len({o.answer for o in got[m]}) > 1
            runs[m].append(median_outcome(got[m]))
    return runs, unstable


def summarize(name: str, outcomes: list[Outcome]) -> dict:
    lat = [o.latency_ms for o in outcomes]
    return {
        "mode": name, "n": len(outcomes),
        "accuracy": sum(o.correct for o in outcomes) / len(outcomes),
        "mean_tokens": statistics.fmean(o.tokens for o in outcomes),
        "think_rate": sum(o.thought for o in outcomes) / len(outcomes),
        "mean_latency_ms": statistics.fmean(lat), "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95),
        "time_to_answer_p50_ms": percentile([o.time_to_answer_ms for o in outcomes], 50),
    }


def accuracy_by(tasks: list[dict], runs: dict[str, list[Outcome]], key=_group) -> dict[str, dict[str, float]]:
    """Accuracy per mode and per ``key(task)`` (by default the task's group)."""
    table: dict[str, dict[str, float]] = {}
    for mode, outs in runs.items():
        groups: dict[str, list[bool]] = {}
        for t, o in zip(tasks, outs):
            groups.setdefault(key(t), []).append(o.correct)
        table[mode] = {k: sum(v) / len(v) for k, v in groups.items()}
    return table


def accuracy_by_group(tasks: list[dict], runs: dict[str, list[Outcome]]) -> dict[str, dict[str, float]]:
    """Accuracy per mode and per group, groups in order of first appearance."""
    return accuracy_by(tasks, runs)


def reach(off: list[Outcome], on: list[Outcome], auto: list[Outcome] | None = None) -> dict:
    """How much of ``on``'s time a controller could save, and how much ``auto`` did.

    Within reach: the queries whose direct answer is right, where answering
    directly loses nothing; the most that can be saved there is Σ (on − off).
    ``savings_within_reach`` is Σ (on − auto) / Σ (on − off) over those queries.
    The oracle also saves (on − off) where both modes are wrong (it picks the
    cheaper wrong answer); no controller that aims at accuracy would, so that is
    reported apart (``out_of_reach_*``), not as a target. Shares are of Σ on.
    """
    on_total = sum(b.latency_ms for b in on) or float("nan")
    right = [i for i, a in enumerate(off) if a.correct]
    both_wrong = [i for i, (a, b) in enumerate(zip(off, on)) if not a.correct and not b.correct]
    within = sum(on[i].latency_ms - off[i].latency_ms for i in right)
    lost = sum(on[i].latency_ms - off[i].latency_ms for i in both_wrong)
    out = {"n_within_reach": len(right), "within_reach_share_of_on": within / on_total,
           "n_out_of_reach": len(both_wrong), "out_of_reach_oracle_share_of_on": lost / on_total}
    if auto is not None:
        saved = sum(on[i].latency_ms - auto[i].latency_ms for i in right)
        out["savings_within_reach"] = saved / within if within > 0 else None
    return out


def group_table(tasks: list[dict], runs: dict[str, list[Outcome]]) -> dict[str, dict]:
    """Per group: size, accuracy per mode, the direct-right rate, mean ``on``
    tokens and what is within reach (see ``reach``; with ``auto`` where it ran)."""
    index: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        index.setdefault(_group(t), []).append(i)
    acc = accuracy_by_group(tasks, runs)
    table = {}
    for g, ids in index.items():
        pick = {m: [outs[i] for i in ids] for m, outs in runs.items()}
        row = {"n": len(ids), "accuracy": {m: acc[m][g] for m in runs}}
        if "off" in pick and "on" in pick:
            row["direct_right"] = acc["off"][g]
            row["mean_on_tokens"] = statistics.fmean(o.tokens for o in pick["on"])
            row.update(reach(pick["off"], pick["on"], pick.get("auto")))
        table[g] = row
    return table


def random_gating(off: list[Outcome], on: list[Outcome], rate: float, draws: int = 50, seed: int = 0) -> dict:
    """Think on a random ``rate`` share of queries (no probe), from measured outcomes."""
    acc = statistics.fmean(rate * b.correct + (1 - rate) * a.correct for a, b in zip(off, on))
    toks = statistics.fmean(rate * b.tokens + (1 - rate) * a.tokens for a, b in zip(off, on))
    mean_lat = statistics.fmean(rate * b.latency_ms + (1 - rate) * a.latency_ms for a, b in zip(off, on))
    rng = random.Random(seed)
    pooled, tta = [], []
    for _ in range(draws):
        for a, b in zip(off, on):
            pick = b if rng.random() < rate else a
            pooled.append(pick.latency_ms)
            tta.append(pick.time_to_answer_ms)
    return {"mode": f"random@{rate:.2f}", "n": len(off), "accuracy": acc, "mean_tokens": toks, "think_rate": rate,
            "mean_latency_ms": mean_lat, "p50_ms": percentile(pooled, 50), "p95_ms": percentile(pooled, 95),
            "time_to_answer_p50_ms": percentile(tta, 50), "simulated": True}


def paired_difference(a: list[Outcome], b: list[Outcome], draws: int = 2000, seed: int = 0) -> dict:
    """Mean per-query latency of ``b`` minus ``a`` (same queries), with a bootstrap
    95% interval over queries: whether one mode is faster, beyond the noise."""
    d = [y.latency_ms - x.latency_ms for x, y in zip(a, b)]
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(d, k=len(d))) for _ in range(draws))
    return {"mean_ms": statistics.fmean(d), "ci95_ms": [percentile(means, 2.5), percentile(means, 97.5)],
            "share_of_a": statistics.fmean(d) / statistics.fmean(x.latency_ms for x in a)}


def oracle(off: list[Outcome], on: list[Outcome]) -> dict:
    """Per query, the cheaper correct mode (off if it is right, else on, else off)."""
    picks = [a if a.correct or not b.correct else b for a, b in zip(off, on)]
    row = summarize("oracle", picks)
    row["think_rate"] = sum(p is b for p, b in zip(picks, on)) / len(picks)
    row["simulated"] = True
    return row


def table(rows: list[dict]) -> str:
    head = f"{'mode':<13}{'acc':>7}{'tokens':>8}{'think':>7}{'mean ms':>9}{'p50 ms':>9}{'p95 ms':>9}{'answer p50':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['mode']:<13}{r['accuracy'] * 100:>6.1f}%{r['mean_tokens']:>8.1f}{r['think_rate'] * 100:>6.0f}%"
                     f"{r['mean_latency_ms']:>9.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['time_to_answer_p50_ms']:>11.1f}")
    return "\n".join(lines)


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pareto_plot(rows: list[dict], out: str | Path, title: str) -> None:
    """Accuracy against mean latency, one point per row.

    Modes often land on the same point (off, random@0.00 and oracle do when auto
    never thinks), so nothing is written next to the points: each row has its
    own marker and colour, named with its values in a legend beside the axes,
    and hollow markers shrink row by row so coinciding ones stay visible inside
    each other.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 4.4))
    colors = plt.get_cmap("tab10").colors
    big, step = 360, 300 / max(len(rows) - 1, 1)  # marker areas, points^2
    for i, r in enumerate(rows):
        x, y = r["mean_latency_ms"], r["accuracy"] * 100
        color, simulated = colors[i % len(colors)], bool(r.get("simulated"))
        label = f"{r['mode']}{' (simulated)' if simulated else ''}: {x:.1f} ms, {y:.1f}%"
        ax.scatter(x, y, s=big - i * step, marker=_MARKERS[i % len(_MARKERS)], label=label, zorder=3 + i,
                   facecolors="none", edgecolors=color, linewidths=1.5 if simulated else 2.0)
    ax.set_xlabel("mean latency per query (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(0.12)  # markers at the extremes stay inside the axes
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, markerscale=0.6,
              frameon=False)
    save_figure(fig, out)


def _direct_share(auto: list[Outcome]) -> dict:
    """The queries ``auto`` answered without reasoning: how many, how right, how fast."""
    direct = [o for o in auto if (o.decision or {}).get("mode") == "off"]
    if not direct:
        return {"n": 0}
    return {"n": len(direct), "accuracy": sum(o.correct for o in direct) / len(direct),
            "median_latency_ms": statistics.median(o.latency_ms for o in direct),
            "p95_latency_ms": percentile([o.latency_ms for o in direct], 95)}


def bench_modes(model: str, tasks: str, opts: RunOptions | None = None, json_out: str | None = None,
                plot: str | None = None) -> dict:
    """Run every mode on ``tasks`` and return the table rows plus per-query outcomes.

    Latencies are per-query medians over ``opts.repeats`` paired runs (see ``run_modes``).
    """
    opts = opts or RunOptions()
    rows_in = take(load_tasks(tasks), opts.limit)
    if opts.url:
        from .runners.endpoint import EndpointEngine

        if opts.profile:
            raise ValueError("--profile applies in process; over HTTP the server's profile decides")
        opened = EndpointEngine(opts.url, model)
    else:
        opened = Engine(model, EngineConfig(n_ctx=1024, n_threads=opts.threads, queue_size=1))
    with opened as engine:
        if opts.profile:
            engine.set_profile(ThinkingProfile.load(opts.profile))
        run_query(engine, rows_in[0], "off", 8)  # warm-up
        runs, unstable = run_modes(engine, rows_in, ("off", "on", "post", "auto"), opts.max_tokens, opts.repeats)
        # over HTTP the profile is the server's; its choices are in each response's decision
        profile = None if opts.url else engine.describe().profile
    rows = [summarize(m, runs[m]) for m in ("off", "on", "post", "auto")]
    groups = group_table(rows_in, runs)
    auto = rows[3]
    rows.append(random_gating(runs["off"], runs["on"], auto["think_rate"]))
    rows.append(oracle(runs["off"], runs["on"]))
    on, orc = rows[1], rows[5]
    saved = on["mean_latency_ms"] - orc["mean_latency_ms"]
    result = {
        "model": model, "tasks": tasks, "n": len(rows_in), "repeats": opts.repeats, "via": opts.url or "in process",
        "answers_changed_between_repeats": unstable, "rows": rows,
        "auto_vs_on_accuracy_points": (auto["accuracy"] - on["accuracy"]) * 100,
        "auto_vs_random_accuracy_points": (auto["accuracy"] - rows[4]["accuracy"]) * 100,
        "auto_minus_on_latency": paired_difference(runs["on"], runs["auto"]),
        "oracle_savings_captured": (on["mean_latency_ms"] - auto["mean_latency_ms"]) / saved if saved > 0 else None,
        **reach(runs["off"], runs["on"], runs["auto"]),
        "accuracy_by_group": accuracy_by_group(rows_in, runs),
        "groups": groups,
        "auto_answered_directly": _direct_share(runs["auto"]),
        "profile": None if profile is None else {"threshold": profile.threshold, "skip_below": profile.skip_below,
                                                 "fitted_on": profile.fitted_on, "features": profile.features,
                                                 "signals": {k: v for k, v in profile.signals.items()
                                                             if k in ("auroc", "chosen", "candidates")}},
        "per_query": {m: [asdict(o) for o in runs[m]] for m in runs},
    }
    if all("n_ops" in t for t in rows_in):  # the key earlier records had (distill/card.py reads it)
        result["accuracy_by_ops"] = accuracy_by(rows_in, runs, key=lambda t: str(t["n_ops"]))
    if json_out:
        write_text_atomic(json_out, json.dumps(result, indent=1))
    if plot:
        pareto_plot(rows, plot, f"{model} on {tasks}: accuracy vs latency")
    return result
