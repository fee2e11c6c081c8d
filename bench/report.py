"""Turn a latency record into a terminal table (rich when installed, plain
text otherwise), a markdown summary, JSON, and a CSV of every sample."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .files import write_text_atomic

SAMPLE_COLUMNS = ["profile", "runner", "prompt_class", "run", "prompt_tokens", "cached_tokens",
                  "completion_tokens", "ttft_ms", "first_token_ms", "short_answer_ms", "e2e_ms",
                  "prefill_tok_s", "decode_tok_s", "finish_reason"]

CAPTION = "times in ms; * = verdict class; baseline = raw llama-cpp-python, same settings"
HEADER = ["profile", "class", "runner", "prompt tok", "TTFT p50", "TTFT p95", "TTFT p99",
          "short p50", "short p95", "e2e p50", "e2e p95", "prefill tok/s", "decode tok/s", "p95 <= target"]


def _f(x, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _mib(b) -> str:
    return "-" if b is None else f"{b / 2**20:,.0f} MiB"


def _load(la) -> str:
    return "-" if not la else "/".join(f"{x:.2f}" for x in la)


def table_rows(record: dict) -> list[list[str]]:
    """One row per profile x class x runner, as strings (shared by every renderer)."""
    rows = []
    for prof in record["profiles"]:
        for cls in prof["classes"]:
            marks = " ".join(("ok" if c["pass"] else "FAIL") for c in cls["checks"])
            for runner, m in cls["runners"].items():
                def p(metric, q):
                    return (m.get(metric) or {}).get(q)
                primary = runner == prof["runner"]
                rows.append([prof["name"], cls["name"] + ("*" if cls["verdict_class"] else ""),
                             "baseline" if runner == "llama-cpp-python" else runner,
                             _f(cls["prompt_tokens"]),
                             _f(p("ttft_ms", "p50")), _f(p("ttft_ms", "p95")), _f(p("ttft_ms", "p99")),
                             _f(p("short_answer_ms", "p50")), _f(p("short_answer_ms", "p95")),
                             _f(p("e2e_ms", "p50")), _f(p("e2e_ms", "p95")),
                             _f(p("prefill_tok_s", "p50")), _f(p("decode_tok_s", "p50"), 1),
                             marks if primary else ""])
    return rows


def profile_lines(record: dict) -> list[str]:
    """Per-profile facts under the table: settings, load, memory, verdict, overhead, assumptions."""
    lines = []
    target = record["config"]["target_ms"]
    for prof in record["profiles"]:
        v = prof["verdict"]
        word = "PASS" if v["pass"] else "FAIL"
        checks = ", ".join(f"{c['metric']} p95 {_f(c['p95_ms'])} ms" for c in v["checks"])
        s = prof.get("settings", {})
        lines.append(f"{prof['name']}: verdict {word} (target {target:g} ms at p95 on "
                     f"{'/'.join(v['classes'])}: {checks})")
        if "n_threads" in s:
            lines.append(f"  settings: {s['n_threads']} thread(s), n_batch {s['n_batch']}, n_ctx {s['n_ctx']}, "
                         f"pinned to {s['cpu_affinity'] or 'nothing'}; load {_f(prof.get('load_ms'))} ms; "
                         f"peak RSS {_mib(prof.get('peak_rss_bytes'))}"
                         + (f" ({_mib(prof['rss_at_start_bytes'])} held before loading)"
                            if prof.get("rss_at_start_bytes") else ""))
        la = prof.get("load_average", {})
        rounds = [x for x in la.get("rounds") or [] if x is not None]
        lines.append(f"  load average (1/5/15 min): start {_load(la.get('start'))}, end {_load(la.get('end'))}"
                     + (f"; 1-min after rounds: max {max(rounds):.2f}" if rounds else ""))
        mem = prof.get("memory") or {}
        if mem.get("weights_bytes_per_token"):
            shares = ", ".join(f"{c['name']} {_f(c['memory']['read_gb_s'], 1)} GB/s ({c['memory']['share']:.0%})"
                               for c in prof["classes"] if (c.get("memory") or {}).get("share"))
            lines.append(f"  memory wall: {mem['weights_bytes_per_token'] / 1e6:.0f} MB of weights read per token; "
                         f"read bandwidth {mem['read_bandwidth_gb_s']:.1f} GB/s ({mem['threads']} thread(s)); "
                         f"decode reads {shares or 'n/a'}")
        for cls in prof["classes"]:
            if cls.get("skipped"):
                lines.append(f"  skipped class {cls['name']}: {cls['skipped']}")
            o = cls.get("overhead")
            if o:
                lines.append(f"  overhead vs llama-cpp-python [{cls['name']}]: TTFT x{_f(o['ttft_ratio'], 3)}, "
                             f"decode x{_f(o['decode_ratio'], 3)} (ms/token), e2e x{_f(o['e2e_ratio'], 3)}, "
                             f"{o['pairs']} pairs, same output: {o['same_output']}")
        for a in prof.get("assumptions", []):
            lines.append(f"  - {a}")
    return lines


def render_plain(record: dict) -> str:
    rows = [HEADER] + table_rows(record)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    out = ["  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
           for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out + [CAPTION, ""] + profile_lines(record))


def print_report(record: dict, stream=None) -> None:
    """Print the table with rich if it is installed, else as plain text."""
    import sys

    stream = stream or sys.stdout
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        print(render_plain(record), file=stream)
        return
    console = Console(file=stream, width=max(160, Console(file=stream).width))
    # escaped: a --label in [brackets] or a CPU name must not be read as rich markup
    table = Table(title=escape(_title(record)), caption=CAPTION)
    for i, h in enumerate(HEADER):
        table.add_column(h, justify="right" if i >= 3 else "left")
    for r in table_rows(record):
        table.add_row(*r, style="red" if "FAIL" in r[-1] else None)
    console.print(table)
    for line in profile_lines(record):
        console.print(line, markup=False, highlight=False)


def _title(record: dict) -> str:
    m = record["fingerprint"]["machine"]
    model = record["fingerprint"].get("model", {})
    title = (f"bench latency: {model.get('name') or record['config'].get('model') or 'endpoint'} "
             f"{model.get('quantization') or ''} on {m.get('cpu')} ({m.get('physical_cores')} cores)")
    if m.get("isa_emulation"):
        title = f"EMULATED ISA ({m['isa_emulation']}). {title}"
    if record["config"].get("label"):
        title = f"[{record['config']['label']}] {title}"
    return title


def markdown_summary(record: dict) -> str:
    """A short markdown table (primary runner only) for READMEs."""
    la = record["load_average"]
    rounds = [x for p in record["profiles"] for x in p.get("load_average", {}).get("rounds") or [] if x is not None]
    lines = [f"**{_title(record)}**, {record['config']['runs']} runs after {record['config']['warmup']} "
             f"warm-up, target {record['config']['target_ms']:g} ms at p95; load average (1/5/15 min) "
             f"{_load(la.get('start'))} at start, {_load(la.get('end'))} at end"
             + (f", 1-min at most {max(rounds):.2f} during the timed rounds." if rounds else "."), "",
             "| profile | class | prompt tok | TTFT p50 / p95 ms | short answer p50 / p95 ms | e2e p50 ms "
             "| prefill tok/s | decode tok/s | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for prof in record["profiles"]:
        word = "**PASS**" if prof["verdict"]["pass"] else "**FAIL**"
        for cls in prof["classes"]:
            if cls.get("skipped"):
                lines.append(f"| {prof['name']} | {cls['name']} | – | skipped: {cls['skipped']} | | | | | |")
                continue
            m = cls["runners"][prof["runner"]]

            def p(metric, q, digits=0):
                return _f((m.get(metric) or {}).get(q), digits)
            checks = "ok" if all(c["pass"] for c in cls["checks"]) else "over"
            lines.append(f"| {prof['name']}{' (emulated)' if prof.get('emulated') else ''} | {cls['name']} "
                         f"| {_f(cls['prompt_tokens'])} | {p('ttft_ms', 'p50')} / {p('ttft_ms', 'p95')} "
                         f"| {p('short_answer_ms', 'p50')} / {p('short_answer_ms', 'p95')} | {p('e2e_ms', 'p50')} "
                         f"| {p('prefill_tok_s', 'p50')} | {p('decode_tok_s', 'p50', 1)} "
                         f"| {word + ' (verdict class)' if cls['verdict_class'] else checks} |")
    return "\n".join(lines) + "\n"


def write_json(record: dict, path: str | Path) -> None:
    write_text_atomic(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def write_csv(record: dict, path: str | Path) -> None:
    """Every timed sample, one row each (the JSON has the summaries)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=SAMPLE_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for s in record["samples"]:
        w.writerow(s)
    write_text_atomic(path, buf.getvalue())


def write_markdown(record: dict, path: str | Path) -> None:
    write_text_atomic(path, markdown_summary(record))
