"""The table of distillation tasks: a new skill is one module and one row here."""

from __future__ import annotations

from thinkling.distill.tasks import arithmetic, basic_arithmetic, calendar, family, general, gsm_symbolic, letter_counting
from thinkling.distill.tasks.base import Chain, Problem, Task, TaskError

TASKS: dict[str, Task] = {
    "arithmetic": arithmetic.TASK,
    "gsm_symbolic": gsm_symbolic.TASK,
    "calendar": calendar.TASK,
    "letter_counting": letter_counting.TASK,
    "basic_arithmetic": basic_arithmetic.TASK,
    "family_relationships": family.TASK,
    "general": general.TASK,
}


def get_task(name: str) -> Task:
    """The task called ``name``; TaskError names the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(name, tuple(TASKS)) from None


__all__ = ["TASKS", "Chain", "Problem", "Task", "TaskError", "get_task"]
