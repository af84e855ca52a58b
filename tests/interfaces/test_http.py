"""The HTTP API against a real daemon process on 127.0.0.1."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from outrider import AuthError, QueueFull, TaskNotFound, TaskState, UserError, shell

if TYPE_CHECKING:
    from .conftest import Daemon


def test_health_needs_no_token_and_openapi_lists_the_api(daemon: Daemon) -> None:
    assert httpx.get(daemon.url + "/health").json()["status"] == "ok"
    spec = httpx.get(daemon.url + "/openapi.json").json()
    for path in ("/v1/tasks", "/v1/tasks/batch", "/v1/wait", "/v1/events", "/v1/notices"):
        assert path in spec["paths"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc"])
def test_missing_or_wrong_token_is_401(daemon: Daemon, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/v1/tasks"), ("POST", "/v1/tasks"), ("GET", "/v1/events"),
                         ("POST", "/mcp"), ("GET", "/v1/status")):  # fmt: skip
        response = httpx.request(method, daemon.url + path, headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["type"] == "AuthError"
        assert "bearer token" in error["message"]
    with daemon.client(token="nope") as client, pytest.raises(AuthError):
        client.list()


def test_submit_get_wait_output(daemon: Daemon) -> None:
    with daemon.client("basic") as client:
        task = client.submit(shell("echo one; echo two"), label="two lines", description="why")
        assert task.state is TaskState.QUEUED
        assert task.session == "basic"
        (done,) = client.wait([task.id], timeout=30)
        assert done.state is TaskState.SUCCEEDED
        assert client.get(task.id).result == "one\ntwo\n"
        assert client.tail(task.id, lines=1) == "two\n"
        assert client.result(task.id) == "one\ntwo\n"
        assert [t.id for t in client.list(states=["succeeded"])] == [task.id]


def test_foreign_ids_look_unknown_across_sessions_and_principals(daemon: Daemon) -> None:
    with daemon.client("mine") as client:
        mine = client.submit(shell("echo secret"))
    with daemon.http("other") as http:
        unknown = http.get("/v1/tasks/t_doesnotexist")
    for session, token in (("other", None), ("mine", "alice-secret-token")):
        with daemon.http(session, token=token) as http:
            _all_unknown(http, mine.id, unknown)
    with daemon.client("mine", token="alice-secret-token") as client, pytest.raises(TaskNotFound):
        client.get(mine.id)
    with daemon.client("mine") as client:
        assert client.get(mine.id).id == mine.id


def _all_unknown(http: httpx.Client, mine_id: str, unknown: httpx.Response) -> None:
    response = http.get(f"/v1/tasks/{mine_id}")
    assert response.status_code == 404
    assert response.json()["error"] == unknown.json()["error"] | {
        "message": unknown.json()["error"]["message"].replace("t_doesnotexist", mine_id)
    }
    assert http.post(f"/v1/tasks/{mine_id}/cancel").status_code == 404
    assert http.get(f"/v1/tasks/{mine_id}/output").status_code == 404
    assert http.post("/v1/wait", json={"task_ids": [mine_id]}).status_code == 404
    assert mine_id not in http.get("/v1/tasks").text


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/tasks", {}, "spec"),
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": ""}}, "spec.command"),
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x"}, "priority": 11},
         "priority"),
        ("POST", "/v1/tasks", {"spec": {"kind": "nope"}}, "spec"),
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x"}, "depends_on": ["t_x"]},
         "depends_on"),
        ("POST", "/v1/tasks", {"spec": {"kind": "handler", "handler": "missing"}}, "spec.handler"),
        ("POST", "/v1/tasks/batch", {"items": []}, "items"),
        ("GET", "/v1/tasks?state=bogus", None, "state.0"),
        ("GET", "/v1/tasks?limit=0", None, "limit"),
        ("POST", "/v1/wait", {"task_ids": []}, "task_ids"),
        ("POST", "/v1/wait", {"task_ids": ["t_x"], "timeout": 301}, "timeout"),
        ("GET", "/v1/tasks/t_x/output?lines=0", None, "lines"),
        ("GET", "/v1/notices?limit=0", None, "limit"),
        ("POST", "/v1/notices/ack", {"up_to": -1}, "up_to"),
        ("POST", "/v1/notices/ack", {"up_to": 2**70}, "up_to"),  # beyond SQLite's integers
        ("GET", "/v1/events?after=-1", None, "after"),
        ("GET", f"/v1/notices/stream?after={2**64}", None, "after"),
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x"}, "ttl": 1e300}, "ttl"),
        ("POST", "/v1/tasks", {"spec": {"command": "x"}}, "spec"),  # `kind` is required
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x"}, "priority": True},
         "priority"),  # booleans are not numbers
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x"}, "timeout": "5"},
         "timeout"),
        ("POST", "/v1/notices/ack", {"up_to": "5"}, "up_to"),
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": []}}, "spec.command"),
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x" * 400_000}},
         "spec.command"),  # over the system's limit for one argument
        ("POST", "/v1/tasks", {"spec": {"kind": "shell", "command": "x\u0000y"}},
         "spec.command"),
    ],
)  # fmt: skip
def test_bad_input_is_400_naming_the_field(
    daemon: Daemon, method: str, path: str, body: object, field: str
) -> None:
    with daemon.http("bad") as http:
        before = http.get("/v1/tasks").json()["tasks"]
        response = http.request(method, path, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "UserError"
        assert error["field"] == field, error
        assert f"`{field.split('.')[0]}" in error["message"] or field in error["message"]
        assert http.get("/v1/tasks").json()["tasks"] == before  # nothing half-written


def test_bad_session_header_and_last_event_id_are_400(daemon: Daemon) -> None:
    with daemon.http("no spaces allowed") as http:
        response = http.get("/v1/tasks")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "session"
    with daemon.http("x") as http:
        for bad in (b"abc", str(2**64).encode(), "²".encode("latin-1")):  # `int("²")` fails
            response = http.get("/v1/events", headers={"Last-Event-ID": bad})
            assert response.status_code == 400
            assert response.json()["error"]["field"] == "Last-Event-ID"
        assert http.get("/v1/nowhere").json()["error"]["type"] == "NotFound"
    with daemon.client("x") as client, pytest.raises(UserError) as caught:
        client.submit(shell("true"), priority=12)
    assert caught.value.field == "priority"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b'"text"', "expected a JSON object, got a string"),
        (b'{"spec": \xff}', "not UTF-8"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests deeper than"),
        (b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}", "nests deeper than"),
        (b'{"spec": {"kind": "shell", "command": "\\ud800"}}', "lone surrogate"),
        (b'{"label": "\\udc00x", "spec": {"kind": "shell", "command": "true"}}', "lone surrogate"),
        (b'{"spec": ', "not JSON"),
    ],
)  # fmt: skip
def test_a_bad_body_is_400_naming_the_body_and_the_connection_stays_usable(
    daemon: Daemon, body: bytes, problem: str
) -> None:
    with daemon.http("raw") as http:
        for _ in range(3):
            response = http.post(
                "/v1/tasks", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["field"] == "body"
            assert problem in error["message"]
            assert "Invalid" in error["message"]
            assert http.get("/v1/status").status_code == 200  # the same keep-alive connection


def test_batch_items_fail_on_their_own(daemon: Daemon) -> None:
    items = [
        {"spec": {"kind": "shell", "command": "echo a"}, "label": "a"},
        {"spec": {"kind": "shell", "command": "echo b"}, "priority": 99},
        {"spec": {"kind": "shell", "command": "echo c"}, "label": "c"},
    ]
    with daemon.client("batch") as client:
        results = client.submit_many(items, group="g1")
        assert [type(r).__name__ for r in results] == ["Task", "SubmitError", "Task"]
        error = results[1]
        assert not hasattr(error, "id")
        assert error.index == 1
        assert error.field == "priority"
        ids = [r.id for r in results if hasattr(r, "id")]
        assert all(t.state is TaskState.SUCCEEDED for t in client.wait(ids, timeout=30))


def test_full_queue_is_429_with_retry_after(daemon: Daemon) -> None:
    with daemon.http("full") as http, daemon.client("full") as client:
        blocker = client.submit(shell("sleep 60"), keys=["hold"])
        stored = [blocker]
        while True:
            response = http.post("/v1/tasks", json={
                "spec": {"kind": "shell", "command": "true"}, "keys": ["hold"]})  # fmt: skip
            if response.status_code != 201:
                break
            stored.append(client.get(response.json()["id"]))
            assert len(stored) <= 41
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"]["type"] == "QueueFull"
        with pytest.raises(QueueFull):
            client.submit(shell("true"), keys=["hold"])
        for task in reversed(stored):  # queued ones first, so none starts meanwhile
            assert client.cancel(task.id).state is TaskState.CANCELLED


def test_sse_resumes_with_last_event_id_without_loss_or_repeat(daemon: Daemon) -> None:
    with daemon.client("sse") as client:
        task = client.submit(shell("echo a; echo b"), group="sse-g")
        seen = []
        for event in client.events():
            seen.append(event)
            if event.type == "group.completed":
                break
        assert next(e.type for e in seen) == "task.queued"
        assert seen[-2].type == "task.succeeded"
        assert all(e.task_id in (task.id, None) for e in seen)
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs))
        # Reconnect from the middle with Last-Event-ID over raw HTTP.
        middle = seen[1].seq
        resumed: list[int] = []
        with (
            daemon.http("sse") as http,
            http.stream("GET", "/v1/events", headers={"Last-Event-ID": str(middle)}) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("id:"):
                    resumed.append(int(line.split(":", 1)[1]))
                if line.startswith("data:") and json.loads(line[5:])["type"] == "group.completed":
                    break
        assert resumed == seqs[2:]


def test_sse_of_all_sessions_has_each_own_session_and_no_one_elses(daemon: Daemon) -> None:
    with (
        daemon.client("all-a") as a,
        daemon.client("all-b") as b,
        daemon.client("all-a", token="alice-secret-token") as other,
    ):
        mine = [a.submit(shell("true")), b.submit(shell("true"))]
        foreign = other.submit(shell("true"))
        a.wait([mine[0].id])
        b.wait([mine[1].id])
        other.wait([foreign.id])
        last = b.submit(shell("true"), group="all-end")  # every event above comes before its end
        session_of: dict[str | None, set[str]] = {}
        for event in a.events(all_sessions=True):
            session_of.setdefault(event.task_id, set()).add(event.session)
            if event.type == "group.completed" and event.group == "all-end":
                break
    assert session_of[mine[0].id] == {"all-a"}
    assert session_of[mine[1].id] == {"all-b"}
    assert session_of[last.id] == {"all-b"}
    assert foreign.id not in session_of
    assert all("/" not in s for sessions in session_of.values() for s in sessions)


def test_notices_fold_a_batch_and_stay_until_acknowledged(daemon: Daemon) -> None:
    with daemon.client("notes") as client:
        solo = client.submit(shell("exit 4"), label="solo", description="should fail")
        client.wait([solo.id], timeout=30)
        results = client.submit_many(
            [{"spec": {"kind": "shell", "command": f"echo {i}"}} for i in range(3)], group="trio"
        )
        client.wait([r.id for r in results if hasattr(r, "id")], timeout=30)
        notices = client.notices()
        while not any(n.kind == "group" for n in notices):  # the summary follows the last end
            client.wait([solo.id], timeout=1)
            notices = client.notices()
        assert [n.kind for n in notices] == ["task", "group"]
        first, summary = notices
        assert first.task_id == solo.id
        assert first.state is TaskState.FAILED
        assert first.exit_code == 4
        assert "should fail" in first.text
        assert "exit 4" in first.text
        assert summary.counts["total"] == 3
        assert summary.counts["succeeded"] == 3
        assert client.notices() == notices  # reading does not acknowledge
        client.ack_notices(first.seq)
        assert client.notices() == [summary]
        client.ack_notices(summary.seq)
        assert client.notices() == []


def test_notice_stream_skips_the_acknowledged_then_follows_live(daemon: Daemon) -> None:
    with daemon.client("follow") as client, daemon.client("follow-other") as other:
        acked = client.submit(shell("true"), label="acked")
        client.wait([acked.id], timeout=30)
        (notice,) = client.notices()
        client.ack_notices(notice.seq)
        failed = client.submit(shell("exit 5"), label="failed")
        client.wait([failed.id], timeout=30)
        stream = client.follow_notices()
        first = next(stream)  # the unacknowledged one, though it ended before the stream began
        assert (first.task_id, first.state, first.exit_code) == (failed.id, TaskState.FAILED, 5)
        foreign = other.submit(shell("true"))
        other.wait([foreign.id], timeout=30)
        live = client.submit(shell("echo live"), label="live")
        second = next(stream)  # arrives as it happens; another session's never does
        assert (second.task_id, second.state) == (live.id, TaskState.SUCCEEDED)
        assert second.preview == "live"
        stream.close()
        assert len(client.notices()) == 2  # reading the stream acknowledges nothing
        with (
            daemon.http("follow") as http,
            http.stream(
                "GET", "/v1/notices/stream", headers={"Last-Event-ID": str(first.seq)}
            ) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    assert json.loads(line[5:])["task_id"] == live.id
                    break


def test_status_shows_keys(daemon: Daemon) -> None:
    with daemon.client() as client:
        status = client.status()
    assert status.keys["hold"].limit == 1
    assert status.max_queued == 40
