"""The latency plot: per profile, the distribution of TTFT and short-answer
latency for each prompt class (box = quartiles, whiskers = 5th-95th
percentile, dots = every run), with the target as a dashed line."""

from __future__ import annotations

from pathlib import Path

PLOTTED = (("ttft_ms", "TTFT"), ("short_answer_ms", "short answer"))
# (TTFT colour, short-answer colour) per runner
COLORS = {"thinkling": ("#1f77b4", "#9ecae1"), "endpoint": ("#1f77b4", "#9ecae1"),
          "llama-cpp-python": ("#636363", "#bdbdbd")}


def _runners(record: dict, prof: dict) -> list[str]:
    others = {s["runner"] for s in record["samples"] if s["profile"] == prof["name"]} - {prof["runner"]}
    return [prof["runner"]] + sorted(others)


def plot_latency(record: dict, path: str | Path) -> None:
    """Write the plot of ``record`` to ``path`` (PNG; headless Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    profiles = record["profiles"]
    target = record["config"]["target_ms"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(6 * len(profiles), 5), squeeze=False,
                             sharey=True)
    rng = np.random.default_rng(0)  # jitter only; fixed so the plot is reproducible
    for ax, prof in zip(axes[0], profiles):
        runners = _runners(record, prof)
        ran = [c for c in prof["classes"] if not c.get("skipped")]
        classes = [c["name"] for c in ran]
        per_class = len(runners) * len(PLOTTED)
        width = 0.8 / per_class
        handles = []
        for r_i, runner in enumerate(runners):
            for m_i, (metric, label) in enumerate(PLOTTED):
                slot = r_i * len(PLOTTED) + m_i
                color = COLORS.get(runner, COLORS["thinkling"])[m_i]
                pos = np.arange(len(classes)) - 0.4 + width * (slot + 0.5)
                series = []
                for cls in classes:
                    vals = [s[metric] for s in record["samples"] if s["profile"] == prof["name"]
                            and s["runner"] == runner and s["prompt_class"] == cls and s[metric] is not None]
                    series.append(vals or [np.nan])
                box = ax.boxplot(series, positions=pos, widths=width * 0.85, whis=(5, 95),
                                 showfliers=False, patch_artist=True, medianprops={"color": "black"})
                for patch in box["boxes"]:
                    patch.set_facecolor(color)
                for x, vals in zip(pos, series):
                    ax.scatter(x + rng.uniform(-width / 4, width / 4, len(vals)), vals, s=6,
                               color="black", alpha=0.5, zorder=3)
                handles.append(Patch(facecolor=color, label=f"{label} ({runner})"))
        line = ax.axhline(target, color="red", linestyle="--", linewidth=1.2, label=f"target {target:g} ms")
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(classes)),
                      [f"{c['name']}\n({c['prompt_tokens']} tok)" for c in ran])
        ax.set_ylabel("latency, ms (log scale)")
        ok = prof["verdict"]["pass"]
        ax.set_title(f"{prof['name']}{' (emulated)' if prof.get('emulated') else ''}: "
                     f"{'PASS' if ok else 'FAIL'} at p95", color="green" if ok else "firebrick")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(handles=handles + [line], loc="upper left", fontsize=7)
    model = record["fingerprint"].get("model", {})
    m = record["fingerprint"]["machine"]
    la = record["load_average"].get("start") or []
    fig.suptitle(f"{model.get('name') or 'endpoint'} {model.get('quantization') or ''} on {m.get('cpu')} "
                 f"({m.get('physical_cores')} cores); {record['config']['runs']} runs per class; "
                 f"load avg {la[0] if la else '?'} at start", fontsize=10)
    from .files import save_figure

    save_figure(fig, path)  # tight layout, written under a temporary name, then renamed
