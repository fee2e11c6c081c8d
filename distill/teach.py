"""A teacher over any OpenAI-compatible chat endpoint: problems in, verified chains out.

    python -m thinkling.distill teach --endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B \\
        --task arithmetic --split train --n-problems 500 --n 4 --out build/teach/arith.jsonl

Each problem of ``--task`` is asked ``--n`` times (separate requests, sampled at
``--temperature``) through the official ``openai`` client, so vLLM, llama-server, a
hosted API or ``thinkling serve`` all work. A reply is parsed into numbered steps and
an answer (``reasoning_content`` + content, ``<think>`` inline, or plain numbered
lines ending ``Answer: ...``) and kept only when the task's filter (``verify``) and
checker (``score``) both pass; a rejected chain is still written, with its reason.

The output is JSONL, one complete fsync'd line per (problem id, sample index), so a
killed run started again with the same arguments asks only what is missing.
``<out>.stats.json`` holds the accepted / rejected counts and the reject rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from thinkling.bench.files import write_text_atomic
from thinkling.distill import cli
from thinkling.distill.tasks import Chain, Problem, Task, get_task
from thinkling.distill.tasks.dataset import reason_kind

log = logging.getLogger(__name__)

SYSTEM_PROMPT = ("Solve the problem. Reason in short numbered steps, one per line. "
                 "End with a final line 'Answer: <answer>' holding only the answer.")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_ANSWER = re.compile(r"^\s*(?:\*\*)?\s*(?:final\s+)?answer\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?(.*?)(?:\*\*)?\s*$",
                     re.I)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
# "1. ", "2) ", "Step 3: " -- a number followed by space, so "12.5 + 3" keeps its number
_NUMBERING = re.compile(r"^\s*(?:step\s*\d+\s*[:.)]|\d+\s*[.)])\s+", re.I)
# The endpoint or the setup is wrong: asking again will not help, so the run stops.
_FATAL_STATUS = {401, 403, 404}


class TeachError(RuntimeError):
    """The run cannot go on: the endpoint is unreachable or refuses us, or the output
    file is not ours to resume. ``what`` says which; the CLI prints it as one line."""

    def __init__(self, what: str, detail: str):
        self.what, self.detail = what, detail
        super().__init__(f"{what}: {detail}")


@dataclass(frozen=True)
class TeachConfig:
    """One teaching run; the CLI's flags have the same names and defaults."""

    endpoint: str
    model: str
    task: str
    out: Path
    split: str = "train"
    n_problems: int = 100
    n: int = 4
    seed: int = 0
    concurrency: int = 4
    retries: int = 5
    timeout_s: float = 120.0
    temperature: float = 0.8
    max_tokens: int = 512
    api_key_env: str | None = None
    extra_body: dict = field(default_factory=dict)  # endpoint-specific fields, e.g. {"think": "on"}


@dataclass
class RunStats:
    """What a run produced; ``accepted``/``rejected`` count every row in the file."""

    rows: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # requests that failed after retries (no row)
    written_now: int = 0  # rows this run added
    expected: int = 0  # problems x samples

    @property
    def reject_rate(self) -> float:
        return round(1 - self.accepted / self.rows, 4) if self.rows else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "reject_rate": self.reject_rate}


# --- parsing a reply ------------------------------------------------------------

def parse_reply(content: str, reasoning: str | None = None) -> tuple[list[str], str]:
    """Steps and answer of one reply.

    The answer is the content's last ``Answer:`` line, else its ``\\boxed{...}``, else
    (when there is a reasoning block) the content's last line; "" when there is none.
    The steps are the numbered lines above the ``Answer:`` line when the content has
    them (what the system prompt asked for: a reasoning model's long monologue stays
    out), else the reasoning (``reasoning_content`` or an inline ``<think>`` block),
    else the content's lines above ``Answer:``.
    """
    content = content or ""
    if not reasoning and THINK_OPEN in content:
        before, _, rest = content.partition(THINK_OPEN)
        reasoning, closed, after = rest.partition(THINK_CLOSE)
        content = after if closed else before
    lines = [ln.strip() for ln in content.splitlines() if ln.strip()]
    answer_at = next((i for i in range(len(lines) - 1, -1, -1) if _ANSWER.match(lines[i])), None)
    body = lines[:answer_at] if answer_at is not None else lines
    if answer_at is not None:
        answer = _ANSWER.match(lines[answer_at]).group(1)
    elif boxed := _BOXED.findall(content):
        answer = boxed[-1]
    else:
        answer = lines[-1] if reasoning and lines else ""  # bare text with no Answer line: nothing to check
    if any(_NUMBERING.match(ln) for ln in body) or (not reasoning and answer_at is not None):
        reasoning = "\n".join(body)
    steps = [_NUMBERING.sub("", ln).strip() for ln in (reasoning or "").splitlines()]
    return [s for s in steps if s], _clean_answer(answer)


def _clean_answer(answer: str) -> str:
    answer = answer.strip().strip("*`").strip()
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def judge(task: Task, problem: Problem, chain: Chain, finish_reason: str | None) -> str | None:
    """None to keep the chain, else why it is rejected (the task's filter, then its checker)."""
    if finish_reason == "length":
        return "cut at max_tokens"
    if not chain.answer:
        return "no answer"
    try:
        reason = task.verify(problem, chain)
        right = reason is None and task.score(problem, chain.answer)
    except Exception as e:  # teacher text is untrusted input: a checker tripping on it costs a row, not the run
        log.warning("%s: the %s checker failed on sample text (%s: %s)", problem.id, task.name, type(e).__name__, e)
        return f"checker error: {type(e).__name__}: {e}"
    if reason is not None:
        return reason
    return None if right else "wrong answer"


# --- the output file --------------------------------------------------------------

def row_key(row: dict) -> tuple[str, int]:
    return row["id"], int(row["sample"])


def load_done(out: Path, task: str, split: str) -> list[dict]:
    """The complete rows already in ``out`` (none if it does not exist).

    A last line without its newline or not JSON is what a kill during a write leaves:
    the file is rewritten without it (atomically) and a warning names it, so that row
    is asked again. A broken line elsewhere, or rows of another task or split, mean
    the file is not this run's: TeachError.
    """
    if not out.exists():
        return []
    text = out.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    rows, truncated = [], tail
    for i, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) and not tail:
                truncated = line  # a last line cut inside its JSON but with a newline
                continue
            raise TeachError("unreadable output", f"{out} line {i} is not JSON; use another --out") from None
    if truncated:
        log.warning("%s: dropped a truncated last line (%d bytes); that row is asked again",
                    out, len(truncated.encode()))
        write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for r in rows:
        if (r.get("task"), r.get("split")) != (task, split):
            raise TeachError("output of another run",
                             f"{out} holds rows of task {r.get('task')!r} split {r.get('split')!r}; use another --out")
    return rows


class RowWriter:
    """Appends one JSON line at a time, flushed and fsync'd, so a kill loses at most
    the line being written (which ``load_done`` then drops)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def make_row(problem: Problem, sample: int, chain: Chain, reject: str | None, raw: str) -> dict:
    return {"id": problem.id, "sample": sample, "task": problem.task, "split": problem.split,
            "level": problem.level, "question": problem.question, "reference": problem.answer,
            "chain": {"path": chain.path, "steps": chain.steps, "answer": chain.answer},
            "kept": reject is None, "reject": reject, "raw": raw}


def load_teacher_chains(paths: list[str | Path] | tuple[str | Path, ...], task: str) -> dict[str, list[Chain]]:
    """The kept chains of ``task`` in teach output files, by problem id (the other
    tasks' rows are skipped, so one file list serves a mix). ``distill data --chains``
    adds them to their problems' program-teacher chains."""
    out: dict[str, list[Chain]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # bad input of `distill data`, which reports a ValueError
                    raise ValueError(f"{path} line {i} is not JSON (a teach run still writing?)") from None
                if row.get("task") == task and row.get("kept"):
                    out.setdefault(row["id"], []).append(Chain(**row["chain"]))
    return out


def summarize(rows: list[dict], errors: Counter, written_now: int, expected: int) -> RunStats:
    """The stats of every row in the file plus this run's failed requests."""
    kept = sum(1 for r in rows if r["kept"])
    rejected = Counter(reason_kind(r["reject"]) for r in rows if not r["kept"])
    return RunStats(rows=len(rows), accepted=kept, rejected=dict(rejected.most_common()),
                    errors=dict(errors), written_now=written_now, expected=expected)


# --- asking the endpoint -----------------------------------------------------------

def _client(cfg: TeachConfig):
    import openai

    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise TeachError("no API key", f"${cfg.api_key_env} is not set")
    else:
        key = os.environ.get("OPENAI_API_KEY") or "none"  # local servers take any key
    # The client retries connection errors, timeouts, 408/409/429 and 5xx itself, with
    # exponential backoff and jitter (0.5 s doubling to 8 s) and Retry-After honoured.
    return openai.AsyncOpenAI(base_url=cfg.endpoint, api_key=key, max_retries=cfg.retries,
                              timeout=cfg.timeout_s)


async def ask(client, cfg: TeachConfig, instruction: str, question: str) -> tuple[str, str | None, str | None]:
    """One sample: (content, reasoning_content or None, finish_reason)."""
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": question}]
    r = await client.chat.completions.create(model=cfg.model, messages=messages, temperature=cfg.temperature,
                                             max_tokens=cfg.max_tokens, extra_body=cfg.extra_body or None)
    choice = r.choices[0]
    msg = choice.message
    # vLLM and thinkling name it reasoning_content; newer vLLM and some hosts say reasoning
    reasoning = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None)
    return msg.content or "", reasoning or None, choice.finish_reason


def _api_detail(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(e, "message", e))


async def _ask_all(cfg: TeachConfig, task: Task, todo: list[tuple[Problem, int]], writer: RowWriter,
                   errors: Counter) -> int:
    """Ask every (problem, sample) of ``todo`` with at most ``cfg.concurrency`` in flight;
    returns the rows written. A request that still fails after the client's retries is
    counted in ``errors`` (no row, so the next run asks it again); an endpoint that
    cannot be reached or refuses us stops the run (TeachError)."""
    import openai

    sem = asyncio.Semaphore(cfg.concurrency)
    instruction = getattr(task, "instruction", None) or SYSTEM_PROMPT
    written = 0

    async def one(problem: Problem, sample: int) -> None:
        nonlocal written
        async with sem:
            try:
                content, reasoning, finish = await ask(client, cfg, instruction, problem.question)
            except openai.APITimeoutError:
                errors["timeout"] += 1
                return
            except openai.APIConnectionError as e:
                raise TeachError("endpoint unreachable",
                                 f"{cfg.endpoint} after {cfg.retries} retries ({e.__cause__ or e})") from None
            except openai.APIStatusError as e:
                if e.status_code in _FATAL_STATUS:
                    raise TeachError(f"endpoint refused the request (HTTP {e.status_code})",
                                     f"{_api_detail(e)} (check --endpoint, --model and the API key)") from None
                errors[f"http {e.status_code}"] += 1
                return
            except openai.APIError as e:
                errors[type(e).__name__] += 1
                return
        steps, answer = parse_reply(content, reasoning)
        chain = Chain(path="teacher", steps=steps, answer=answer)
        raw = f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{content}" if reasoning else content
        writer.write(make_row(problem, sample, chain, judge(task, problem, chain, finish), raw))
        written += 1
        if written % 50 == 0:
            log.info("%d / %d rows written", written, len(todo))

    client = _client(cfg)
    async with client:
        jobs = [asyncio.create_task(one(p, s)) for p, s in todo]
        try:
            await asyncio.gather(*jobs)
        finally:
            for j in jobs:
                j.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
    return written


def stats_path(out: Path) -> Path:
    return out.with_name(out.name + ".stats.json")


def teach(cfg: TeachConfig) -> RunStats:
    """Ask the teacher for every (problem, sample) not yet in ``cfg.out``, verify each
    chain, append the rows, and write ``<out>.stats.json``. Raises TeachError/TaskError."""
    task = get_task(cfg.task)
    problems = task.sample(cfg.split, cfg.n_problems, cfg.seed)
    done = {row_key(r) for r in load_done(cfg.out, task.name, cfg.split)}
    todo = [(p, s) for p in problems for s in range(cfg.n) if (p.id, s) not in done]
    log.info("%s: %d problems x %d samples, %d already written, %d to ask",
             cfg.out, len(problems), cfg.n, len(problems) * cfg.n - len(todo), len(todo))
    errors: Counter = Counter()
    writer = RowWriter(cfg.out)
    try:
        written = asyncio.run(_ask_all(cfg, task, todo, writer, errors)) if todo else 0
    finally:
        writer.close()
    stats = summarize(load_done(cfg.out, task.name, cfg.split), errors, written, len(problems) * cfg.n)
    record = {"endpoint": cfg.endpoint, "model": cfg.model, "task": task.name, "split": cfg.split,
              "n_problems": len(problems), "n": cfg.n, "temperature": cfg.temperature, **stats.to_dict()}
    write_text_atomic(stats_path(cfg.out), json.dumps(record, indent=1) + "\n")
    return stats


# --- CLI ---------------------------------------------------------------------------

def register(sub) -> None:
    """Add ``teach`` to ``python -m thinkling.distill``'s subcommands."""
    p = sub.add_parser("teach", help="ask a teacher over an OpenAI-compatible endpoint for verified chains",
                       description=__doc__.split("\n\n")[0])
    d = TeachConfig("", "", "", Path())
    p.add_argument("--endpoint", required=True, help="base URL of the OpenAI API, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="the model name the endpoint serves")
    p.add_argument("--task", required=True, help="a task of `python -m thinkling.distill tasks`")
    p.add_argument("--out", required=True, type=Path, help="chains JSONL (appended; resumed when it exists)")
    p.add_argument("--split", default=d.split)
    p.add_argument("--n-problems", type=int, default=d.n_problems)
    p.add_argument("--n", type=int, default=d.n, help="samples per problem")
    p.add_argument("--seed", type=int, default=d.seed, help="which problems the task samples")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight")
    p.add_argument("--retries", type=int, default=d.retries, help="per request, with exponential backoff")
    p.add_argument("--timeout", dest="timeout_s", type=float, default=d.timeout_s, help="seconds per request")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--api-key-env", default=None, help="environment variable holding the API key")
    p.add_argument("--extra-body", type=json.loads, default={},
                   help='JSON object merged into each request, e.g. \'{"think": "on"}\' for thinkling')
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> None:
    """The ``teach`` subcommand: exit 2 with one line on stderr for a bad setup, exit 1
    when some requests failed (run again to fill them in)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("httpx", "httpx2"):  # a line per request otherwise (openai 3 sends through httpx2)
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("n_problems", "n", "concurrency"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if not isinstance(args.extra_body, dict):
        raise ValueError("--extra-body must be a JSON object")
    cfg = TeachConfig(**{f: getattr(args, f) for f in TeachConfig.__dataclass_fields__})
    stats = teach(cfg)  # TeachError, TaskError: ``distill.cli`` prints them
    print(json.dumps(stats.to_dict(), indent=1))
    if stats.errors:
        print(f"{cli.PROG} teach: {sum(stats.errors.values())} requests failed after retries "
              f"({', '.join(f'{k}: {v}' for k, v in stats.errors.items())}); run again to ask them",
              file=sys.stderr)
        raise SystemExit(1)
