"""node.logs.LogBudget: a line a caller can provoke at will is logged at most so often,
and the next line logged says how many were not."""

from __future__ import annotations

from node.logs import LogBudget


def test_lines_beyond_the_budget_are_counted_and_reported_by_the_next_window() -> None:
    budget = LogBudget(per_window=3, window=60.0)
    shown = [budget.allow("peer-a", now=10.0 + i) for i in range(10)]
    assert [ok for ok, _ in shown] == [True] * 3 + [False] * 7
    assert budget.allow("peer-b", now=15.0) == (True, 0)  # keys have their own budget
    # A new window: the first line tells what the last one held back.
    assert budget.allow("peer-a", now=70.0) == (True, 7)
    assert budget.allow("peer-a", now=71.0) == (True, 0)


def test_a_budget_of_one_a_minute() -> None:
    budget = LogBudget(per_window=1, window=60.0)
    assert budget.allow("disk", now=0.0) == (True, 0)
    assert budget.allow("disk", now=30.0) == (False, 0)
    assert budget.allow("disk", now=59.0) == (False, 0)
    assert budget.allow("disk", now=60.0) == (True, 2)
