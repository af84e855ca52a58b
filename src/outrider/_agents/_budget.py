"""Token and cost budgets, enforced before each model request is sent.

A run has its own budget (the task's `budget_tokens` / `budget_cost`) and shares its delegation
tree's (`Tree`): children spend from what the tree has left. Before each request:

- its input is estimated from what is sent (messages, instructions and tool definitions): the
  provider's count for this run's previous request plus a third of a token per character
  added since (a quarter per character for the first request, measured on our JSON, which is
  longer than what the provider counts);
- a request whose estimated input alone exceeds what is left of either budget is not sent
  (`BudgetExceeded`, the task ends `failed` with type `budget`);
- otherwise its `max_tokens` is capped at what is left after that input (for a cost budget,
  at what the remaining dollars buy at the model's output price) and, when the caller sets
  none, at `DEFAULT_OUTPUT_CAP`; the estimate plus the cap are reserved on the tree, so
  parallel children cannot together overspend it, and one child's request leaves room for
  its siblings;
- when the answer is in, the reservation is replaced by what the provider reports.

So spending stays within the budget up to the error of the input estimate; it never exceeds it
by more than one request's output cap. A cost budget needs the model's price (`[prices]`).
`_metered.BudgetedModel` puts every model request through a run's `BudgetGuard`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._providers import Price

__all__ = ["DEFAULT_OUTPUT_CAP", "BudgetExceeded", "BudgetGuard", "Tree"]

DEFAULT_OUTPUT_CAP = 8_192
"""The output tokens a request under a budget asks for when its caller sets no `max_tokens`:
reserving all that is left instead would leave nothing to a sibling running in parallel."""


class BudgetExceeded(Exception):
    """A request would not fit in what is left of a budget; the message says which."""


@dataclass
class Tree:
    """What a delegation tree has left, shared by its running tasks (reservations included)."""

    tokens_left: int | None
    cost_left: float | None
    live: int = 0
    """Delegated tasks not yet ended."""

    def take(self, tokens: int, cost: float) -> None:
        """Spend (or, negative, give back) tokens and dollars."""
        if self.tokens_left is not None:
            self.tokens_left -= tokens
        if self.cost_left is not None:
            self.cost_left -= cost

    def exhausted(self) -> str | None:
        """Why nothing more can be spent, or None."""
        if self.tokens_left is not None and self.tokens_left <= 0:
            return "its delegation tree's token budget is spent"
        if self.cost_left is not None and self.cost_left <= 1e-12:
            return "its delegation tree's cost budget is spent"
        return None


def _cost(price: Price | None, tokens_in: int, tokens_out: int) -> float:
    if price is None:
        return 0.0
    return (tokens_in * price.input + tokens_out * price.output) / 1_000_000


@dataclass
class BudgetGuard:
    """One run's budget check before each request (see the module doc)."""

    tree: Tree
    tokens: int | None
    """The run's token budget."""
    cost: float | None
    """The run's cost budget, in USD."""
    price: Price | None
    spent_tokens: int = 0
    spent_cost: float = 0.0
    _reserved: tuple[int, float] | None = field(default=None, repr=False)
    _chars: int = 0
    _last: tuple[int, int] | None = None
    """(characters, input tokens) of the previous request, as the provider counted them."""

    def estimate(self, chars: int) -> int:
        """The input tokens of a request of `chars` characters (see the module doc)."""
        if self._last is None or chars < self._last[0]:
            return math.ceil(chars / 4)
        return self._last[1] + math.ceil((chars - self._last[0]) / 3)

    def _room(self) -> tuple[int | None, float | None]:
        tokens = None if self.tokens is None else self.tokens - self.spent_tokens
        if self.tree.tokens_left is not None:
            tokens = self.tree.tokens_left if tokens is None else min(tokens, self.tree.tokens_left)
        cost = None if self.cost is None else self.cost - self.spent_cost
        if self.tree.cost_left is not None:
            cost = self.tree.cost_left if cost is None else min(cost, self.tree.cost_left)
        return tokens, cost

    @property
    def unbounded(self) -> bool:
        """Neither the run nor its tree has a budget (a request needs no estimate)."""
        return self._room() == (None, None)

    def before(self, chars: int, max_tokens: int | None) -> int | None:
        """The `max_tokens` for a request of `chars` characters; None: no cap needed.

        Raises:
            BudgetExceeded: Its input alone would not fit.
        """
        tokens, cost = self._room()
        if tokens is None and cost is None:
            self._chars = chars
            return max_tokens
        estimate = self.estimate(chars)
        cap = DEFAULT_OUTPUT_CAP if max_tokens is None else max_tokens
        if tokens is not None:
            if estimate >= tokens:
                raise BudgetExceeded(
                    f"Token budget exceeded: the next request's input is about {estimate} "
                    f"tokens and only {max(tokens, 0)} are left; it was not sent."
                )
            cap = min(cap, tokens - estimate)
        if cost is not None and self.price is not None:
            left = cost - _cost(self.price, estimate, 0)
            out_price = self.price.output
            affordable = math.floor(left * 1_000_000 / out_price) if out_price else None
            if left <= 0 or (affordable is not None and affordable < 1):
                raise BudgetExceeded(
                    f"Cost budget exceeded: the next request's input costs about "
                    f"${_cost(self.price, estimate, 0):.4f} and only ${max(cost, 0):.4f} is "
                    "left; it was not sent."
                )
            if affordable is not None:
                cap = min(cap, affordable)
        reserved = (estimate + cap, _cost(self.price, estimate, cap))
        self.tree.take(*reserved)
        self._reserved, self._chars = reserved, chars
        return cap

    def after(self, tokens_in: int, tokens_out: int) -> None:
        """The provider's count for the request last allowed by `before`."""
        if self._reserved is not None:
            self.tree.take(-self._reserved[0], -self._reserved[1])
            self._reserved = None
        cost = _cost(self.price, tokens_in, tokens_out)
        self.tree.take(tokens_in + tokens_out, cost)
        self.spent_tokens += tokens_in + tokens_out
        self.spent_cost += cost
        if tokens_in > 0 and self._chars > 0:
            self._last = (self._chars, tokens_in)
