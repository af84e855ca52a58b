"""Log lines: quiet by default, `OUTRIDER_LOG=debug` turns them on; durations read well."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from outrider import _logging
from outrider._logging import configure_from_env, format_duration, logger

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def fresh_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    handlers, level = list(logger.handlers), logger.level
    monkeypatch.setattr(_logging, "_configured", False)
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.mark.usefixtures("fresh_logger")
def test_the_env_variable_turns_log_lines_on_once(monkeypatch: pytest.MonkeyPatch) -> None:
    before = len(logger.handlers)
    monkeypatch.setenv("OUTRIDER_LOG", " debug ")
    configure_from_env()
    configure_from_env()
    assert len(logger.handlers) == before + 1
    assert logger.level == logging.DEBUG
    assert isinstance(logger.handlers[-1], logging.StreamHandler)


@pytest.mark.usefixtures("fresh_logger")
@pytest.mark.parametrize("value", ["", "loud"])
def test_unset_or_unknown_levels_leave_the_library_quiet(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    before = list(logger.handlers)
    monkeypatch.setenv("OUTRIDER_LOG", value)
    configure_from_env()
    assert logger.handlers == before


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.12, "120ms"), (4.21, "4.2s"), (150, "2m 30s"), (3720, "1h 02m")],
)
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
