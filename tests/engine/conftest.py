from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import outrider
from outrider.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outrider.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def orch(db: Path) -> AsyncIterator[outrider.Orchestrator]:
    async with outrider.Orchestrator(db, outrider.Settings(shutdown_grace=0.5)) as orch:
        yield orch
