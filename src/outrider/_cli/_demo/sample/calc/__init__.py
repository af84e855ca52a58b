"""A tiny calculator: the sample project the demo lints, tests and builds."""


def add(a: float, b: float) -> float:
    """Return a + b."""
    return a + b


def mean(values: list[float]) -> float:
    """Return the arithmetic mean of a non-empty list."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)
