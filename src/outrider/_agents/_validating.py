"""An OpenAI client whose chat completions are parsed by pydantic's compiled validator.

The OpenAI SDK builds each response object field by field in Python (`construct_type`), which
accepts anything: 70-75 µs for one streamed chunk of a chat completion, against 6-7 µs for
pydantic's validation of it. A watched agent gets a chunk every 10-30 ms of each model call, so
that construction was a large share of its CPU. This client validates a chat completion, whole
or streamed, and leaves whatever the validator refuses to the SDK's construction, so an answer
that bends the format (a server's own finish reason, say) reads exactly as before. It hooks the
SDK's one parse step, a private method; `tests/agents/test_validating.py` fails if a new SDK
moves it.

The Anthropic SDK's stream events are small and of one kind each (9.9 µs constructed, 6.3
validated), so its client stays as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

import pydantic
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

if TYPE_CHECKING:
    import httpx2

__all__ = ["ValidatingOpenAI"]

_T = TypeVar("_T")

_VALIDATED: dict[object, type[pydantic.BaseModel]] = {
    kind: kind for kind in (ChatCompletion, ChatCompletionChunk)
}
"""The kinds of response validated: a chat completion, whole or streamed."""


def _validated(data: object, kind: object) -> pydantic.BaseModel | None:
    """`data` validated as `kind`; None when `kind` is not validated or the data does not fit."""
    model = _VALIDATED.get(kind)
    if model is None or not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError:
        return None


class ValidatingOpenAI(AsyncOpenAI):
    """`AsyncOpenAI`, its chat completions parsed by pydantic's validator (see the module doc)."""

    def _process_response_data(
        self, *, data: object, cast_to: type[_T], response: httpx2.Response
    ) -> _T:
        parsed = _validated(data, cast_to)
        if parsed is not None:
            return cast("_T", parsed)
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)
