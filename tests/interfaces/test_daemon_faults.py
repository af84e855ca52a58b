"""The daemon under faults: a full disk answers 503 with Retry-After, and /health says so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from outrider.testing import wait_until

from ..conftest import fill
from .conftest import launch, stop

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
def test_a_full_disk_answers_503_and_the_daemon_says_degraded(small_disk: Path) -> None:
    daemon = launch(small_disk)
    try:
        with daemon.http(session="s") as http:
            spec = {"kind": "shell", "command": "sleep 60", "grace_period": 0.1}
            task = http.post("/v1/tasks", json={"spec": spec}).json()
            anyio.run(lambda: wait_until(
                lambda: http.get(f"/v1/tasks/{task['id']}").json()["state"] == "running",
                timeout=10,
            ))  # fmt: skip
            filler = fill(small_disk)
            cancelled = http.post(f"/v1/tasks/{task['id']}/cancel")
            assert cancelled.status_code == 503
            assert cancelled.headers["Retry-After"]
            error = cancelled.json()["error"]
            assert error["type"] == "StoreUnavailable"
            assert f"the disk is full at {small_disk}" in error["message"]
            health = http.get("/health").json()
            assert health["status"] == "degraded"
            submitted = http.post("/v1/tasks", json={"spec": {"kind": "shell", "command": "true"}})
            assert submitted.status_code == 503
            assert submitted.json()["error"]["type"] == "StoreUnavailable"
            filler.unlink()
            waited = http.post("/v1/wait", json={"task_ids": [task["id"]], "timeout": 20}).json()
            assert waited["done"]
            assert waited["tasks"][0]["state"] == "cancelled"
            assert http.get("/health").json()["status"] == "ok"
    finally:
        assert stop(daemon) == 0
