"""Labelled task sets that carry their own checker: the one place answers are scored.

A task set is JSONL, one object per line::

    {"question": "98 + 8", "answer": "106", "check": "number", "group": "1 ops"}
    {"question": "Which day ...?", "answer": "Monday", "check": "exact"}

``check`` defaults to ``number``; ``group`` (the row's line in per-group
tables) defaults to ``"<n_ops> ops"`` when the row has ``n_ops``, else the
``reasoning-gym:<dataset>`` check's dataset, else ``"all"``. Other fields pass
through (a ``number`` check's ``tol``, a ``choice`` check's ``choices``, a
``regex`` check's ``pattern``, reasoning-gym's ``metadata``).

``load_tasks`` reads a file, a built-in name (``bench/tasks/<name>.jsonl``) or
generates a reasoning-gym set (``rg:<dataset>?seed=7&n=100&<config>=...``);
``score`` judges one answer; ``bench modes``, ``thinkling calibrate`` and the
distill kit all call them. reasoning-gym is imported only by the checker and
the generator that need it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import typing
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from thinkling.runtime.errors import ThinklingError

from .files import write_text_atomic

TASKS_DIR = Path(__file__).parent / "tasks"
RG_PREFIX = "rg:"  # a generated reasoning-gym set: rg:<dataset>?seed=..&n=..&<config field>=..
RG_CHECK = "reasoning-gym"  # the check "reasoning-gym:<dataset>"
# reasoning-gym draws item i of a dataset from Random(seed + i), so the sets of seeds 7 and 8
# would share all but one item; our seed s asks for its seed s * RG_SEED_STRIDE instead, and
# sets of up to RG_SEED_STRIDE items with different seeds never share an item.
RG_SEED_STRIDE = 1_000_000


class TaskSetError(ThinklingError, ValueError):
    """A task set that cannot be read or scored: where (``source``, 1-based ``line``
    or None) and why (``reason``). A ``ThinklingError`` so every CLI prints one line."""

    code = "invalid_request"

    def __init__(self, source: str, line: int | None, reason: str):
        self.source, self.line, self.reason = str(source), line, reason
        where = f"tasks file {self.source}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {reason}")


# --- checkers: (row, answer) -> right? -----------------------------------------------

_INT = re.compile(r"-?\d+")
_NUM = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_TRAILING = ".!?,;:。 \t\n"


def _normal(text: str) -> str:
    """Case, runs of whitespace and trailing punctuation do not count."""
    return " ".join(str(text).split()).casefold().rstrip(_TRAILING)


def _tolerance(row: dict, label: float) -> float:
    """The row's ``tol``: a number is absolute, ``"2%"`` relative to the label."""
    tol = row.get("tol", 0)
    if isinstance(tol, str) and tol.strip().endswith("%"):
        return abs(label) * float(tol.strip()[:-1]) / 100
    return float(tol)


def check_number(row: dict, answer: str) -> bool:
    """The last number in the answer equals the label (within the row's ``tol``).

    An integer label with no ``tol`` is compared as text against the last run of
    digits, as ``bench modes`` always has ("1,000" or "3.0" for 3 are wrong there).
    """
    label = str(row["answer"]).strip()
    if "tol" not in row and _INT.fullmatch(label):
        nums = _INT.findall(answer)
        return bool(nums) and nums[-1] == label
    nums = _NUM.findall(answer)
    if not nums:
        return False
    got, want = float(nums[-1].replace(",", "")), float(label.replace(",", ""))
    tol = _tolerance(row, want)
    return abs(got - want) <= tol if tol else math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def check_exact(row: dict, answer: str) -> bool:
    """The answer is the label, ignoring case, spacing and trailing punctuation."""
    return _normal(answer) == _normal(row["answer"])


def _names(choice: str, answer: str) -> bool:
    # a one-letter choice ("A") is matched case-sensitively: otherwise the article "a" names it
    flags = 0 if len(choice) == 1 else re.IGNORECASE
    return re.search(rf"(?<!\w){re.escape(choice)}(?!\w)", answer, flags) is not None


def check_choice(row: dict, answer: str) -> bool:
    """The answer names exactly one of the row's ``choices``, and it is the label."""
    norm = _normal(answer)
    named = [c for c in row["choices"] if _normal(c) == norm] or \
            [c for c in row["choices"] if _names(str(c).strip(), answer)]
    return len(named) == 1 and _normal(named[0]) == _normal(row["answer"])


def check_regex(row: dict, answer: str) -> bool:
    """The row's ``pattern`` matches somewhere in the answer (``re.search``)."""
    return re.search(row["pattern"], answer) is not None


@functools.lru_cache(maxsize=None)
def _rg_scorer(dataset: str) -> Callable:
    import reasoning_gym  # a bench extra; only rows with this check need it

    try:
        return reasoning_gym.get_score_answer_fn(dataset)
    except (KeyError, ValueError) as e:
        raise TaskSetError(f"{RG_CHECK}:{dataset}", None, f"reasoning-gym has no dataset {dataset!r}") from e


def check_reasoning_gym(row: dict, answer: str) -> bool:
    """reasoning-gym's own ``score_answer`` for the dataset named in the check,
    with the row's ``metadata``; a score of at least 0.99 is right."""
    dataset = row["check"].partition(":")[2]
    entry = {"question": row.get("question", ""), "answer": str(row["answer"]), "metadata": row.get("metadata", {})}
    return float(_rg_scorer(dataset)(answer, entry) or 0.0) >= 0.99


# name -> checker; "name:arg" checks look up "name" (the checker reads its argument from row["check"])
CHECKS: dict[str, Callable[[dict, str], bool]] = {
    "number": check_number,
    "exact": check_exact,
    "choice": check_choice,
    "regex": check_regex,
    RG_CHECK: check_reasoning_gym,
}


def _known() -> str:
    return ", ".join(f"{n}:<dataset>" if n == RG_CHECK else n for n in CHECKS)


def score(row: dict, answer: str) -> bool:
    """Whether ``answer`` (the model's answer text) is right for the task ``row``."""
    check = row.get("check", "number")
    fn = CHECKS.get(str(check).partition(":")[0])
    if fn is None:
        raise TaskSetError("row", None, f"unknown check {check!r} (known: {_known()})")
    return fn(row, answer)


# --- reading -------------------------------------------------------------------------

def _check_fields(row: dict, name: str, arg: str) -> str | None:
    """Why ``row`` cannot be scored by its check ``name[:arg]``, or None when it can."""
    if name == RG_CHECK:
        if not arg:
            return f'check "{RG_CHECK}" needs a dataset: "{RG_CHECK}:<dataset>"'
        try:
            _rg_scorer(arg)
        except TaskSetError as e:
            return e.reason
    if name == "number":
        try:
            float(str(row["answer"]).replace(",", ""))
        except ValueError:
            return f'check "number" needs a number as "answer", not {row["answer"]!r}'
        if "tol" in row:
            try:
                _tolerance(row, 1.0)
            except (TypeError, ValueError):
                return f'"tol" is not a number or a percentage: {row["tol"]!r}'
    if name == "choice":
        if not (isinstance(row.get("choices"), list) and row["choices"]):
            return 'check "choice" needs a non-empty "choices" list'
        if _normal(row["answer"]) not in {_normal(c) for c in row["choices"]}:
            return '"answer" is not one of "choices"'
    if name == "regex":
        if not isinstance(row.get("pattern"), str) or not row["pattern"]:
            return 'check "regex" needs a "pattern"'
        try:
            re.compile(row["pattern"])
        except re.error as e:
            return f'"pattern" is not a regular expression: {e}'
    return None


def _validate(row: dict, source: str, line: int | None) -> dict:
    """The row with ``answer`` as text and ``check``/``group`` filled in; a bad row raises."""
    def bad(reason: str) -> TaskSetError:
        return TaskSetError(source, line, reason)

    if not isinstance(row, dict):
        raise bad("not a JSON object")
    for key in ("question", "answer"):
        if key not in row:
            raise bad(f'missing "{key}"')
    if not isinstance(row["question"], str) or not row["question"].strip():
        raise bad('"question" is not a non-empty string')
    if isinstance(row["answer"], (dict, list, bool)) or row["answer"] is None:
        raise bad('"answer" is not a string or a number')
    check = row.get("check", "number")
    name, _, arg = str(check).partition(":")
    if not isinstance(check, str) or name not in CHECKS:
        raise bad(f"unknown check {check!r} (known: {_known()})")
    reason = _check_fields(row, name, arg)
    if reason:
        raise bad(reason)
    group = row.get("group")
    if group is None:
        group = f"{row['n_ops']} ops" if "n_ops" in row else arg if name == RG_CHECK else "all"
    return {**row, "answer": str(row["answer"]), "check": check, "group": str(group)}


def _read_jsonl(path: Path, source: str) -> list[dict]:
    rows = []
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise TaskSetError(source, i, f"not valid JSON ({e.msg}, column {e.colno})") from None
        rows.append(_validate(row, source, i))
    if not rows:
        raise TaskSetError(source, None, "no tasks in the file")
    return rows


def builtin_names() -> list[str]:
    """The built-in task sets (``bench/tasks/*.jsonl``), by name."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.jsonl"))


def load_tasks(spec: str) -> list[dict]:
    """The tasks of ``spec``: a JSONL path, a built-in name (``arith-test``) or a
    generated reasoning-gym set (``rg:calendar_arithmetic?seed=7&n=100&tasks=a,b``).

    Every row has ``question``, ``answer`` (text), ``check`` and ``group``; other
    fields pass through. Raises ``TaskSetError`` naming the file and line.
    """
    if spec.startswith(RG_PREFIX):
        return generate_rg(spec)
    path = Path(spec)
    if not path.is_file():
        path = TASKS_DIR / f"{spec}.jsonl"
    if not path.is_file():
        raise TaskSetError(spec, None, f"not found (a JSONL file, {RG_PREFIX}<dataset>?seed=..&n=.., "
                                       f"or a built-in set: {', '.join(builtin_names())})")
    try:
        return _read_jsonl(path, spec)
    except UnicodeDecodeError as e:
        raise TaskSetError(spec, None, f"not UTF-8 text ({e.reason})") from None


def write_tasks(rows: list[dict], path: str | Path) -> None:
    """Write ``rows`` as JSONL (temp name, then rename)."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# --- generated reasoning-gym sets ----------------------------------------------------

def _coerce(value: str, annotation) -> object:
    """A query-string value as the config field's type (lists are comma-separated)."""
    hint = str(annotation).lower()
    if "list" in hint or "tuple" in hint or "sequence" in hint:
        return [v for v in value.split(",") if v]
    try:
        return json.loads(value)  # numbers, true/false
    except json.JSONDecodeError:
        return value


def _rg_config(dataset: str, seed: int, size: int, params: dict[str, str], spec: str):
    import reasoning_gym  # a bench extra; only generated sets need it
    from reasoning_gym.factory import DATASETS

    if dataset not in DATASETS:
        raise TaskSetError(spec, None, f"reasoning-gym has no dataset {dataset!r}")
    config_cls = DATASETS[dataset][1]
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise TaskSetError(spec, None, f"{dataset} has no setting {', '.join(unknown)} "
                                       f"(settings: {', '.join(sorted(set(fields) - {'seed', 'size'}))})")
    kwargs = {k: _coerce(v, hints.get(k, fields[k].type)) for k, v in params.items()}
    try:
        return reasoning_gym.create_dataset(dataset, seed=seed * RG_SEED_STRIDE, size=size, **kwargs)
    except (ValueError, TypeError, AssertionError) as e:
        raise TaskSetError(spec, None, f"reasoning-gym refused the settings: {e}") from None


def generate_rg(spec: str) -> list[dict]:
    """A reasoning-gym set from ``rg:<dataset>?seed=S&n=N&<config field>=<value>``.

    Deterministic for a seed, and sets of different seeds share no item (see
    ``RG_SEED_STRIDE``). Each row's
    check is ``reasoning-gym:<dataset>`` with its ``metadata`` (round-tripped
    through JSON, so a frozen file scores exactly as the live set); its group is
    the item's sub-task where the dataset names one (``metadata["task"]``).
    """
    name, _, query = spec[len(RG_PREFIX):].partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    try:
        seed, size = int(params.pop("seed", 0)), int(params.pop("n", 100))
    except ValueError:
        raise TaskSetError(spec, None, "seed and n must be integers") from None
    if not name or not 1 <= size <= RG_SEED_STRIDE or seed < 0:
        raise TaskSetError(spec, None, f"expected {RG_PREFIX}<dataset>?seed=S&n=N with S >= 0 and "
                                       f"1 <= N <= {RG_SEED_STRIDE}")
    rows = []
    for item in _rg_config(name, seed, size, params, spec):
        meta = json.loads(json.dumps(item.get("metadata", {}), default=str))
        task = meta.get("task") if isinstance(meta.get("task"), str) else None
        rows.append(_validate({"question": item["question"], "answer": str(item["answer"]),
                               "check": f"{RG_CHECK}:{name}", "group": f"{name}/{task}" if task else name,
                               "metadata": meta}, spec, None))
    return rows
