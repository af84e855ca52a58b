"""The HTTP API against its own OpenAPI document, with generated requests (schemathesis).

A daemon of its own runs one task that holds the only running slot, so the generated tasks are
stored and queued but never run: generated shell commands are never executed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from outrider import shell

from .conftest import launch, stop

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import Daemon


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("contract")
    (home / "outrider.toml").write_text("max_running = 1\nmax_queued = 100000\n")
    daemon = launch(home)
    with daemon.client("contract") as client:
        client.submit(shell("sleep 3600"), label="holds the only slot")
    yield daemon
    stop(daemon)


def test_every_endpoint_keeps_its_contract(held: Daemon) -> None:
    schema = schemathesis.openapi.from_url(held.url + "/openapi.json")
    # Streams never end, and shutdown would stop the daemon under test.
    schema = schema.exclude(path_regex=r"/stream$|/events$|/shutdown$")
    headers = {"Authorization": f"Bearer {held.token}", "X-Outrider-Session": "contract"}
    # A schema-valid request may still be refused on meaning (an unknown handler or task id,
    # a missing folder), with a documented 4XX: that check does not apply to this API.
    semantic = schemathesis.checks.positive_data_acceptance
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            query = case.query if isinstance(case.query, dict) else {}
            for held_for in ("wait", "timeout"):  # held tasks never end: no long polls
                if isinstance(query.get(held_for), int | float):
                    query[held_for] = min(query[held_for], 0.2)
            case.call_and_validate(base_url=held.url, headers=headers, excluded_checks=[semantic])

        check()
