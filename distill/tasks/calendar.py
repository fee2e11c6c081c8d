"""calendar_arithmetic (reasoning-gym), two kinds: weekday_offset and count_days.

weekday_offset paths:
  mod7   the offset as whole weeks and a remainder, then the weekday moved by the remainder
         (``40 = 5 * 7 + 5``, ``Tuesday + 5 = Sunday``);
  walk   the whole weeks keep the weekday, then the remaining days walked one by one.
count_days paths:
  weeks  the days in the range, whole weeks and a remainder, the remainder's days named;
  first  the first such weekday in the range, then every 7 days to the end.
The filter recomputes every date, count and weekday it reads from the question.
"""

from __future__ import annotations

import random
import re
from datetime import date, timedelta

from thinkling.distill.tasks.base import Chain, Problem
from thinkling.distill.tasks.rg import ReasoningGymTask

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TARGET = re.compile(r"How many (\w+)s are|occurrences of (\w+) from|does (\w+) occur")
_DIVMOD = re.compile(r"^(\d+) = (\d+) \* 7 \+ (\d+)$")
_SHIFT = re.compile(r"^(\w+) ([-+]) (\d+) = (\w+)$")
_WEEKS = re.compile(r"^(\d+) weeks? later: (\w+)$")
_WALK = re.compile(r"^then: (\w+(?:, \w+)*)$")
_SPAN = re.compile(r"^(\w+ \d+) to (\w+ \d+): (\d+) days$")
_COUNT_WEEKS = re.compile(r"^(\d+) weeks: (\d+) (\w+)s$")
_REST = re.compile(r"^(\d+) more days? from (\w+): (\d+) (\w+?)s$")
_FIRST = re.compile(r"^first (\w+): (\w+ \d+)$")
_EVERY = re.compile(r"^(\w+ \d+) to (\w+ \d+): (\d+) days, (\d+) // 7 = (\d+)$")
_SUM = re.compile(r"^(\d+) \+ (\d+) = (\d+)$")


def _day(d: date) -> str:
    return DAYS[d.weekday()]


def _md(d: date) -> str:
    return f"{d.strftime('%B')} {d.day}"


def _parse_md(text: str, year: int) -> date | None:
    try:
        month, day = text.split()
        return date(year, [date(2000, m, 1).strftime("%B") for m in range(1, 13)].index(month) + 1, int(day))
    except ValueError:
        return None


class Calendar(ReasoningGymTask):
    name = "calendar"
    dataset = "calendar_arithmetic"
    check = "reasoning-gym:calendar_arithmetic"
    config = {"tasks": ["weekday_offset", "count_days"], "offset_upper_bound": 100}
    paths = ("mod7", "walk", "weeks", "first")

    def level(self, entry: dict) -> str:
        return entry["metadata"]["task"]

    def meta(self, entry: dict) -> dict:
        meta = dict(entry["metadata"])
        if meta["task"] == "count_days":  # reasoning-gym keeps the weekday only in the question
            meta["weekday"] = next(g for g in _TARGET.search(entry["question"]).groups() if g)
        return meta

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` distinct paths of the problem's kind, the week-modulo one first."""
        m = problem.meta
        if m["task"] == "weekday_offset":
            chains = self._offset_chains(date.fromisoformat(m["start_date"]), m["offset_days"])
        else:
            chains = self._count_chains(date.fromisoformat(m["start_date"]),
                                        date.fromisoformat(m["end_date"]), m["weekday"])
        return [c for c in chains if c.answer == problem.answer][:k]

    @staticmethod
    def _offset_chains(start: date, offset: int) -> list[Chain]:
        sign, n = ("+" if offset >= 0 else "-"), abs(offset)
        q, r = divmod(n, 7)
        step = 1 if offset >= 0 else -1
        answer = _day(start + timedelta(days=offset))
        mod7 = [f"{n} = {q} * 7 + {r}", f"{_day(start)} {sign} {r} = {answer}"]
        walk = [f"{q} weeks later: {_day(start)}"]
        if r:
            walk.append("then: " + ", ".join(_day(start + timedelta(days=step * i)) for i in range(1, r + 1)))
        return [Chain("mod7", mod7, answer), Chain("walk", walk, answer)]

    @staticmethod
    def _count_chains(start: date, end: date, weekday: str) -> list[Chain]:
        n = (end - start).days + 1
        q, r = divmod(n, 7)
        rest = [_day(start + timedelta(days=q * 7 + i)) for i in range(r)]
        hit = int(weekday in rest)
        answer = str(q + hit)
        weeks = [f"{_md(start)} to {_md(end)}: {n} days", f"{n} = {q} * 7 + {r}", f"{q} weeks: {q} {weekday}s"]
        if r:
            weeks.append(f"{r} more day{'s' if r > 1 else ''} from {_day(start)}: {hit} {weekday}s")
            weeks.append(f"{q} + {hit} = {answer}")
        first = start + timedelta(days=(DAYS.index(weekday) - start.weekday()) % 7)
        if first > end:
            return [Chain("weeks", weeks, answer)]
        gap = (end - first).days
        chain = [f"first {weekday}: {_md(first)}", f"{_md(first)} to {_md(end)}: {gap} days, {gap} // 7 = {gap // 7}",
                 f"1 + {gap // 7} = {gap // 7 + 1}"]
        return [Chain("weeks", weeks, answer), Chain("first", chain, answer)]

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """None if every line recomputes right from the question and ends at the answer."""
        if not chain.steps:
            return "empty chain"
        m = problem.meta
        if m["task"] == "weekday_offset":
            why = _verify_offset(date.fromisoformat(m["start_date"]), m["offset_days"], chain)
        else:
            why = _verify_count(date.fromisoformat(m["start_date"]), date.fromisoformat(m["end_date"]),
                                m["weekday"], chain)
        if why is None and not self.score(problem, chain.answer):
            return "wrong answer"
        return why

    def wrong_answer(self, rng: random.Random, answer: str) -> str:
        if answer in DAYS:
            return DAYS[(DAYS.index(answer) + rng.choice((-2, -1, 1, 2))) % 7]
        return super().wrong_answer(rng, answer)


def _verify_offset(start: date, offset: int, chain: Chain) -> str | None:
    n, step = abs(offset), (1 if offset >= 0 else -1)
    day, moved = _day(start), 0  # the weekday reached so far and the days it is from the start
    for k, line in enumerate(chain.steps):
        if (m := _DIVMOD.match(line)) is not None:
            if int(m[1]) != n or int(m[2]) * 7 + int(m[3]) != n or int(m[3]) > 6:
                return f"wrong step {k + 1}: {line}"
            moved += 7 * int(m[2])  # whole weeks keep the weekday
        elif (m := _SHIFT.match(line)) is not None:
            if m[1] != day or m[2] != ("+" if step > 0 else "-") or m[4] not in DAYS:
                return f"wrong step {k + 1}: {line}"
            if DAYS.index(m[4]) != (DAYS.index(day) + step * int(m[3])) % 7:
                return f"wrong step {k + 1}: {line}"
            day, moved = m[4], moved + int(m[3])
        elif (m := _WEEKS.match(line)) is not None:
            if m[2] != day:
                return f"wrong step {k + 1}: {line}"
            moved += 7 * int(m[1])
        elif (m := _WALK.match(line)) is not None:
            for name in m[1].split(", "):
                if name not in DAYS or DAYS.index(name) != (DAYS.index(day) + step) % 7:
                    return f"wrong step {k + 1}: {line}"
                day, moved = name, moved + 1
        else:
            return f"malformed line {k + 1}"
    if moved != n:
        return "the steps do not add up to the offset"
    if chain.answer != day:
        return "answer differs from the last step"
    return None


def _verify_count(start: date, end: date, weekday: str, chain: Chain) -> str | None:
    results: list[int] = []  # numbers each line established, the last is the count
    weeks, rest, first = -1, -1, None  # what the divmod and first-day lines established
    counts: list[int] = []  # counts of the weekday the lines established
    for k, line in enumerate(chain.steps):
        bad = f"wrong step {k + 1}: {line}"
        if (m := _SPAN.match(line)) is not None:
            a, b = _parse_md(m[1], start.year), _parse_md(m[2], start.year)
            if a != start or b != end or int(m[3]) != (end - start).days + 1:
                return bad
            results.append(int(m[3]))
        elif (m := _DIVMOD.match(line)) is not None:
            if int(m[1]) not in results or int(m[2]) * 7 + int(m[3]) != int(m[1]) or int(m[3]) > 6:
                return bad
            weeks, rest = int(m[2]), int(m[3])
            results += [weeks, rest]
        elif (m := _COUNT_WEEKS.match(line)) is not None:
            if m[1] != m[2] or int(m[1]) not in results or m[3] != weekday:
                return bad
            results.append(int(m[2]))
            counts.append(int(m[2]))
        elif (m := _REST.match(line)) is not None:
            r = int(m[1])
            days = [_day(start + timedelta(days=weeks * 7 + i)) for i in range(r)]
            if r != rest or m[2] != _day(start) or m[4] != weekday or int(m[3]) != int(weekday in days):
                return bad
            results.append(int(m[3]))
            counts.append(int(m[3]))
        elif (m := _FIRST.match(line)) is not None:
            first = _parse_md(m[2], start.year)
            if m[1] != weekday or first is None or not start <= first <= end or _day(first) != weekday \
                    or (first - start).days > 6:
                return bad
            counts.append(1)
        elif (m := _EVERY.match(line)) is not None:
            a, b = _parse_md(m[1], start.year), _parse_md(m[2], start.year)
            if a is None or a != first or b != end or (b - a).days != int(m[3]) \
                    or int(m[4]) != int(m[3]) or int(m[3]) // 7 != int(m[5]):
                return bad
            results.append(int(m[5]))
            counts.append(int(m[5]))
        elif (m := _SUM.match(line)) is not None:
            if int(m[1]) + int(m[2]) != int(m[3]) or counts[-2:] != [int(m[1]), int(m[2])]:
                return bad
            results.append(int(m[3]))
        else:
            return f"malformed line {k + 1}"
    if not results or str(results[-1]) != chain.answer.strip():
        return "answer differs from the last step"
    return None


TASK = Calendar()
