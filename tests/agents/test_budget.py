"""Budgets reserved before a request: parallel runs of one tree never overspend it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outrider._agents._budget import DEFAULT_OUTPUT_CAP, BudgetExceeded, BudgetGuard, Tree
from outrider._agents._providers import Price

STEPS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 4000), st.floats(0, 1), st.floats(0, 1)),
    max_size=40,
)


@given(budget=st.integers(1, 20_000), steps=STEPS)
def test_parallel_runs_never_spend_more_than_their_tree(
    budget: int, steps: list[tuple[int, int, float, float]]
) -> None:
    tree = Tree(budget, None)
    guards = [BudgetGuard(tree, None, None, None) for _ in range(3)]
    pending: dict[int, int] = {}
    spent = 0
    for who, chars, in_share, out_share in steps:
        guard = guards[who]
        if who in pending:  # its answer comes in: at most the estimate and the cap
            cap = pending.pop(who)
            tokens_in = int(guard.estimate(guard._chars) * in_share)
            tokens_out = int(cap * out_share)
            guard.after(tokens_in, tokens_out)
            spent += tokens_in + tokens_out
            continue
        try:
            cap = guard.before(chars, None)
        except BudgetExceeded:
            continue
        assert cap is not None
        assert cap >= 1
        pending[who] = cap
    assert spent <= budget


def test_a_cost_budget_caps_the_output_at_what_the_dollars_buy() -> None:
    price = Price(input=1.0, output=2.0)
    guard = BudgetGuard(Tree(None, None), None, 0.001, price)
    cap = guard.before(400, None)  # ~100 input tokens: $0.0001; $0.0009 buys 450 output
    assert cap == 450
    guard.after(100, 450)
    with pytest.raises(BudgetExceeded, match="Cost budget exceeded"):
        guard.before(400, None)


def test_parallel_children_of_a_roomy_tree_each_get_a_request() -> None:
    tree = Tree(50_000, None)
    first, second = (BudgetGuard(tree, None, None, None) for _ in range(2))
    cap = first.before(4_000, None)  # in flight: its reservation must leave room for a sibling
    assert cap == DEFAULT_OUTPUT_CAP
    assert second.before(4_000, None) == DEFAULT_OUTPUT_CAP
    assert BudgetGuard(Tree(2_000, None), None, None, None).before(4_000, None) == 1_000
