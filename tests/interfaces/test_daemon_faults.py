"""The daemon under faults: a full disk answers 503 with Retry-After, and /health says so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

from outrider import TaskState
from outrider.testing import wait_until

from ..conftest import fill
from .conftest import crash, launch, stop

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


@pytest.mark.slow
def test_a_restarted_daemon_answers_at_once_that_it_is_recovering(tmp_path: Path) -> None:
    (tmp_path / "outrider.toml").write_text("[limits]\nshell = 8\n")
    daemon = launch(tmp_path)
    with daemon.http(session="s") as http:
        spec = {"kind": "shell", "command": "trap '' TERM; echo up; sleep 60", "grace_period": 2}
        ids = [http.post("/v1/tasks", json={"spec": spec}).json()["id"] for _ in range(4)]

        def all_up() -> bool:
            return all(http.get(f"/v1/tasks/{i}/output").json()["output"] for i in ids)

        anyio.run(lambda: wait_until(all_up, timeout=20))
    crash(daemon, guardian_too=True)  # only the next start can stop what they left
    daemon = launch(tmp_path)
    try:
        health = httpx.get(daemon.url + "/health").json()
        assert health["status"] == "recovering"
        assert "4 tasks" in health["detail"]
        with daemon.client("s") as client:
            tasks = client.wait(ids, timeout=30)
        assert {t.state for t in tasks} == {TaskState.FAILED}
        assert httpx.get(daemon.url + "/health").json()["status"] == "ok"
    finally:
        assert stop(daemon) == 0
