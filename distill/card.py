"""A student's MODEL_CARD.md, generated from its records: no number is typed by hand.

    python -m thinkling.distill card --student distill/artifacts/<student> [--modes FILE] [--retention FILE]

Reads, in the student's folder: ``eval.json`` (``python -m thinkling.distill evaluate``; required),
and where present ``build_report.json`` or ``train_report.json`` (the trainer's record; the
``stats.json`` of the data folder it names), ``student.json`` (the registry row),
``modes.json`` (``bench modes --json``: off / on / post / auto / random / oracle, the
savings within reach) and ``retention.json`` (agreement with the base model). ``--modes`` / ``--retention`` point at files kept elsewhere (``bench/results/``).
The card is written whole (temp name, then rename).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from thinkling.bench.files import write_text_atomic
from thinkling.bench.modes import Outcome, random_gating, reach
from thinkling.distill import cli
from thinkling.runtime.errors import ThinklingError

EVAL, STUDENT, MODES, RETENTION = "eval.json", "student.json", "modes.json", "retention.json"
BUILDS = ("build_report.json", "train_report.json")  # the build's record, else the trainer's


class CardError(ThinklingError):
    """A record the card needs is missing or unreadable: which file, and why."""

    code = "invalid_request"

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Records:
    """What a card is generated from; ``files`` names each record's file, for the card."""

    eval: dict
    build: dict | None = None
    student: dict | None = None
    modes: dict | None = None
    retention: dict | None = None
    data: dict | None = None  # the training data's stats.json (python -m thinkling.distill data)
    files: dict[str, str] = field(default_factory=dict)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise CardError(path, f"cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise CardError(path, f"not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict):
        raise CardError(path, "not a JSON object")
    return data


def load_records(student: str | Path, modes: str | Path | None = None,
                 retention: str | Path | None = None) -> Records:
    """The records of the student folder (and the named ``modes``/``retention`` files)."""
    folder = Path(student)
    if not folder.is_dir():
        raise CardError(folder, "not a folder")
    found: dict[str, Path] = {}
    build = next((folder / b for b in BUILDS if (folder / b).is_file()), folder / BUILDS[0])
    for key, path, given in (("eval", folder / EVAL, None), ("build", build, None),
                             ("student", folder / STUDENT, None), ("modes", folder / MODES, modes),
                             ("retention", folder / RETENTION, retention)):
        path = Path(given) if given else path
        if given or path.is_file():
            found[key] = path
    if "eval" not in found:
        raise CardError(folder / EVAL, "missing (write it with: python -m thinkling.distill evaluate --model M "
                                       f"--tasks FILE --out {folder / EVAL})")
    data = {k: _read(p) for k, p in found.items()}
    if "by_task" not in data["eval"] or "overall" not in data["eval"]:
        raise CardError(found["eval"], "not an evaluator record (no by_task / overall)")
    stats = _data_stats(data.get("build"))
    if stats is not None:
        found["data"] = stats
        data["data"] = _read(stats)
    return Records(**data, files={k: str(p) for k, p in found.items()})


def _data_stats(build: dict | None) -> Path | None:
    """The ``stats.json`` beside the training data the trainer's record names, if it is there."""
    where = (build or {}).get("data")
    if not isinstance(where, str):
        return None
    folder = Path(where) if Path(where).is_dir() else Path(where).parent
    return folder / "stats.json" if (folder / "stats.json").is_file() else None


def write_card(student: str | Path, modes: str | Path | None = None, retention: str | Path | None = None) -> Path:
    """Render ``student``/MODEL_CARD.md from its records; returns its path."""
    out = Path(student) / "MODEL_CARD.md"
    records = load_records(student, modes, retention)
    try:
        text = render_card(records)
    except (KeyError, TypeError, AttributeError) as e:  # a record of another shape or version
        raise CardError(student, f"a record lacks a field the card needs ({type(e).__name__}: {e})") from None
    write_text_atomic(out, text)
    return out


# --- rendering -------------------------------------------------------------------------

def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _loads(x) -> str:
    return " / ".join(f"{v:g}" for v in x) if isinstance(x, list) else "not recorded"


def _num(x) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.4g}"  # never an exponent for a duration


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list]) -> str:
    return "\n".join([_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)])


def render_card(rec: Records) -> str:
    """The card's markdown text."""
    ev = rec.eval
    name = (rec.student or {}).get("name") or ev.get("model", "student")
    parts = [f"# {name}", _provenance(rec)]
    if rec.student:
        parts.append("## Registry entry\n\n" + _kv(rec.student))
    parts += [_eval_section(ev, rec.files["eval"])]
    if rec.modes:
        parts.append(_modes_section(rec.modes, rec.files["modes"]))
    if rec.retention:
        parts.append(_retention_section(rec.retention, rec.files["retention"]))
    if rec.build:
        parts.append(f"## Training\n\nFrom `{rec.files['build']}`:\n\n" + _kv(rec.build))
    if rec.data:
        parts.append(_data_section(rec.data, rec.files["data"]))
    return "\n\n".join(parts) + "\n"


def _provenance(rec: Records) -> str:
    files = ", ".join(f"`{p}`" for p in rec.files.values())
    return (f"Generated by `python -m thinkling.distill card` from the records {files}; every number below "
            "is read from them (regenerate the card after re-measuring, never edit it).")


def _eval_section(ev: dict, path: str) -> str:
    modes = ev["modes"]
    m = ev.get("machine", {})
    where = (f"`{ev.get('model_file', ev.get('model'))}` through the runtime ({ev.get('model_format', '?')}, "
             f"{ev.get('decoding', 'greedy')}, at most {ev.get('max_tokens', '?')} new tokens), "
             f"{ev['n']} held-out tasks from {', '.join(f'`{t}`' for t in ev.get('tasks', []))}; "
             f"recorded {ev.get('recorded', '?')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores, "
             f"load average at start {_loads(m.get('load_at_start'))}) (`{path}`).")
    return "\n\n".join([
        "## Accuracy per skill (`python -m thinkling.distill evaluate`)", where,
        _eval_table(ev["by_task"], ev["overall"], modes, "skill"),
        "`off`: the share answered right directly, with no reasoning at all; `on − off`: the points "
        "that the chain adds over the direct answer.",
        "### Per group", _eval_table(ev["by_group"], None, modes, "group"),
        *(["### Per task file", _eval_table(ev["by_source"], None, modes, "file")]
          if len(ev.get("by_source", {})) > 1 else []),
    ])


def _eval_table(table: dict, overall: dict | None, modes: list[str], what: str) -> str:
    timed = all("mean_tokens" in s["modes"][mm] for s in table.values() for mm in modes)
    head = [what, "n", *modes, "on − off", "chain helps"]
    if timed:
        head += [f"mean tokens {'/'.join(modes)}", f"mean ms {'/'.join(modes)}"]
    rows = []
    for name, s in list(table.items()) + ([("**all**", overall)] if overall else []):
        row = [name, s["n"], *(_pct(s["modes"][mm]["accuracy"]) for mm in modes),
               f"{s['on_minus_off_points']:+.1f}" if "on_minus_off_points" in s else "-",
               {True: "yes", False: "no"}.get(s.get("chain_helps"), "-")]
        if timed:
            row += [" / ".join(f"{s['modes'][mm]['mean_tokens']:.1f}" for mm in modes),
                    " / ".join(f"{s['modes'][mm]['mean_latency_ms']:.0f}" for mm in modes)]
        rows.append(row)
    return _table(head, rows)


def _modes_section(r: dict, path: str) -> str:
    rows = [[x["mode"] + (" (simulated)" if x.get("simulated") else ""), _pct(x["accuracy"]),
             f"{x['mean_tokens']:.1f}", _pct(x["think_rate"]), f"{x['mean_latency_ms']:.0f}", f"{x['p95_ms']:.0f}"]
            for x in r["rows"]]
    lines = [f"## Thinking modes and `auto` (`bench modes`)",
             f"`bench modes --model {r.get('model')} --tasks {r.get('tasks')}`: {r['n']} tasks, "
             f"{r.get('repeats', 1)} paired run(s) per query and mode, via {r.get('via', 'in process')} (`{path}`).",
             _table(["mode", "accuracy", "mean tokens", "think rate", "mean ms", "p95 ms"], rows)]
    facts = [f"auto − on accuracy: {r['auto_vs_on_accuracy_points']:+.1f} points",
             f"auto − random gating at its think rate: {r['auto_vs_random_accuracy_points']:+.1f} points"]
    runs = _outcomes(r)
    got = reach(runs["off"], runs["on"], runs["auto"]) if all(m in runs for m in ("off", "on", "auto")) else r
    if got.get("savings_within_reach") is not None:
        facts.append(f"savings within reach taken by auto: {_pct(got['savings_within_reach'])} "
                     f"(within reach: {_pct(got.get('within_reach_share_of_on'))} of on's time, on the "
                     f"{got.get('n_within_reach')} queries whose direct answer is right)")
    direct = r.get("auto_answered_directly") or {}
    if direct.get("n"):
        facts.append(f"auto answered {direct['n']} directly: {_pct(direct['accuracy'])} right, "
                     f"median {direct['median_latency_ms']:.0f} ms end to end")
    lines.append("\n".join(f"- {f}" for f in facts))
    per_skill = _modes_per_skill(runs)
    if per_skill:
        lines += ["### Per skill", per_skill]
    return "\n\n".join(lines)


def _outcomes(r: dict) -> dict[str, list[Outcome]]:
    return {m: [Outcome(**o) for o in outs] for m, outs in r.get("per_query", {}).items()}


def _modes_per_skill(runs: dict[str, list[Outcome]]) -> str:
    """Per skill (the group's part before '/'), from the per-query outcomes, through
    bench.modes' own reach and random-gating functions."""
    if not all(m in runs for m in ("off", "on", "auto")):
        return ""
    skills: dict[str, list[int]] = {}
    for i, o in enumerate(runs["off"]):
        skills.setdefault(o.group.split("/", 1)[0], []).append(i)
    rows = []
    for skill, ids in skills.items():
        pick = {m: [outs[i] for i in ids] for m, outs in runs.items()}
        acc = {m: sum(o.correct for o in outs) / len(outs) for m, outs in pick.items()}
        rate = sum(o.thought for o in pick["auto"]) / len(ids)
        rnd = random_gating(pick["off"], pick["on"], rate)
        got = reach(pick["off"], pick["on"], pick["auto"])
        rows.append([skill, len(ids), *(_pct(acc.get(m)) for m in ("off", "on", "post", "auto")),
                     _pct(rate), _pct(rnd["accuracy"]), _pct(got["within_reach_share_of_on"]),
                     _pct(got.get("savings_within_reach"))])
    return _table(["skill", "n", "off", "on", "post", "auto", "auto thinks", "random at that rate",
                   "within reach (of on's time)", "savings within reach taken"], rows)


def _retention_section(r: dict, path: str) -> str:
    """Agreement with the base model's greedy answers (``python -m thinkling.distill retention``)."""
    if not all(k in r for k in ("n", "exact", "prefix", "prefix_share")):
        return f"## Retention\n\nFrom `{path}`:\n\n" + _kv(r)
    return (f"## Retention\n\nAgreement of `{r.get('model', '?')}` with the greedy answers of its base "
            f"`{r.get('base_model', '?')}` on {r['n']} held-out general prompts (split `{r.get('split', '?')}`, "
            f"at most {r.get('max_tokens', '?')} new tokens; `{path}`):\n\n"
            + _table(["answered identically", "same first words", "mean share of the first words matched"],
                     [[_pct(r["exact"]), _pct(r["prefix"]), _pct(r["prefix_share"])]]))


DATA_COLUMNS = ("problems", "written", "kept", "injected", "caught", "missed", "false_rejections",
                "precision", "recall")


def _data_section(stats: dict, path: str) -> str:
    """Per task: what the noisy teacher wrote, what the filter kept, and how it did on the
    mistakes injected to measure it; then the rows per mode."""
    tasks = stats.get("tasks", {})
    def cell(s: dict, c: str) -> str:
        return _pct(s.get(c)) if c in ("precision", "recall") else _num(s.get(c, "-"))

    rows = [[t, *(cell(s, c) for c in DATA_COLUMNS),
             ", ".join(f"{m} {n:,}" for m, n in s.get("rows_by_mode", {}).items())] for t, s in tasks.items()]
    spec = stats.get("spec", {})
    head = (f"From `{path}`: {_num(stats.get('rows', '?'))} training rows, chat format "
            f"`{spec.get('chat', '?')}`, up to {spec.get('k', '?')} teacher paths per problem, "
            f"{_pct(spec.get('mistake_rate'))} of the chains corrupted on purpose before the filter.")
    return "\n\n".join(["## Training data", head,
                         _table(["task", *(c.replace("_", " ") for c in DATA_COLUMNS), "rows by mode"], rows)])


def _flat(d: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, object]]:
    """Scalar fields (nested objects as dotted keys, two levels); long lists summarized."""
    out: list[tuple[str, object]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 2:
            out += _flat(v, key + ".", depth + 1)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            last = v[-1]
            out.append((f"{key} (last of {len(v)})",
                        ", ".join(f"{a} {_num(b)}" for a, b in last.items() if isinstance(b, (int, float)))))
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out.append((key, v))
        elif isinstance(v, list) and len(v) <= 8 and all(isinstance(x, (str, int, float)) for x in v):
            out.append((key, ", ".join(_num(x) for x in v)))
    return out


def _kv(d: dict) -> str:
    rows = [[f"`{k}`", _num(v) if v is not None else "-"] for k, v in _flat(d)]
    return _table(["field", "value"], rows)


def register(sub) -> None:
    """``python -m thinkling.distill card``."""
    p = sub.add_parser("card", help="write a student's MODEL_CARD.md from its records",
                       description=__doc__.splitlines()[0])
    p.add_argument("--student", required=True, help="the student's folder (with eval.json)")
    p.add_argument("--modes", help="a bench modes JSON (default: modes.json in the folder, if any)")
    p.add_argument("--retention", help="a retention record (default: retention.json in the folder, if any)")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> None:
    print(write_card(args.student, args.modes, args.retention))


def main(argv: list[str] | None = None) -> int:
    """``python -m thinkling.distill.card`` (the same as ``python -m thinkling.distill card``)."""
    return cli.command_main("card", argv)


if __name__ == "__main__":
    sys.exit(main())
