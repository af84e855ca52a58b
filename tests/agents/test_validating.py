"""Chat completions parsed by pydantic's validator, the SDK's own construction as the fallback.

Against the fake provider over real HTTP; the SDK's field-by-field construction is watched, so
each test also shows what a plain `AsyncOpenAI` does with the same answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai._base_client
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel
from pydantic_ai import Agent

from outrider._agents._providers import ProviderConfig, Providers
from outrider._agents._validating import ValidatingOpenAI
from tests.fakellm import FakeLLM, Reply

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

_ASK: list[Any] = [{"role": "user", "content": "go"}]
_PER_CALL = {"id", "created"}
"""What differs between two answers of the fake to the same question (tool calls have ids too)."""


def _comparable(value: object) -> object:
    """A response's fields, without those that differ per call."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in _PER_CALL}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def constructed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The kinds of response the SDK built field by field (`construct_type`), in order."""
    made: list[object] = []
    real = openai._base_client.construct_type

    def spy(*, type_: Any, value: object) -> object:
        made.append(type_)
        return real(type_=type_, value=value)

    monkeypatch.setattr(openai._base_client, "construct_type", spy)
    return made


async def _streamed(client: AsyncOpenAI, model: str) -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model=model, messages=_ASK, stream=True, stream_options={"include_usage": True}
    )
    return [chunk async for chunk in stream]


@pytest.fixture
async def clients(fake: FakeLLM) -> AsyncIterator[tuple[AsyncOpenAI, AsyncOpenAI]]:
    """outrider's client and the SDK's own, to the fake."""
    async with (
        ValidatingOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as ours,
        AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as theirs,
    ):
        yield ours, theirs


async def test_a_streamed_answer_is_validated_and_reads_as_the_sdk_reads_it(
    fake: FakeLLM, clients: tuple[AsyncOpenAI, AsyncOpenAI], constructed: list[object]
) -> None:
    fake.script("stream", [Reply.say("hello there, streaming world")] * 2)
    ours, theirs = clients
    chunks = await _streamed(ours, "stream")
    assert constructed == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there, streaming world"
    assert chunks[-1].usage is not None
    sdk_chunks = await _streamed(theirs, "stream")
    assert constructed  # the same answer, the SDK's way
    assert _comparable(chunks) == _comparable(sdk_chunks)


async def test_a_whole_answer_is_validated_and_reads_as_the_sdk_reads_it(
    fake: FakeLLM, clients: tuple[AsyncOpenAI, AsyncOpenAI], constructed: list[object]
) -> None:
    fake.script("whole", [Reply.tool("list_files", pattern="*.py")] * 2)
    ours, theirs = clients
    answer = await ours.chat.completions.create(model="whole", messages=_ASK)
    assert constructed == []
    assert isinstance(answer, ChatCompletion)
    calls = answer.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].type == "function"
    assert calls[0].function.name == "list_files"
    sdk_answer = await theirs.chat.completions.create(model="whole", messages=_ASK)
    assert constructed == [ChatCompletion]
    assert _comparable(answer) == _comparable(sdk_answer)


async def test_what_the_validator_refuses_is_built_by_the_sdk_as_before(
    fake: FakeLLM, clients: tuple[AsyncOpenAI, AsyncOpenAI], constructed: list[object]
) -> None:
    """A server's own finish reason (`eos`) is no value the format allows: that chunk, and
    only that one, is built as the SDK builds it, and keeps what the server sent."""
    fake.script("bent", [Reply.say("bent but readable", finish_reason="eos")])
    ours, _ = clients
    chunks = await _streamed(ours, "bent")
    assert constructed == [ChatCompletionChunk]
    ends = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert ends == ["eos"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "bent but readable"


async def test_the_agents_models_are_read_so(fake: FakeLLM, constructed: list[object]) -> None:
    providers = Providers({"fake": ProviderConfig(base_url=fake.base_url, api_key="k")})
    fake.script("agent", [Reply.say("all done")])
    try:
        agent = Agent(providers.model(providers.resolve("fake/agent")))
        async with agent.run_stream("go") as run:
            answer = await run.get_output()
    finally:
        await providers.aclose()
    assert answer == "all done"
    assert constructed == []
