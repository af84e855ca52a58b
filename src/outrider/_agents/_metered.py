"""A pydantic-ai model whose every request first passes a run's `BudgetGuard` (see `_budget`).

Imported with the agent loop (pydantic-ai takes seconds to import), never by `import outrider`.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic_ai.messages import ModelMessagesTypeAdapter
from pydantic_ai.models.wrapper import WrapperModel

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from pydantic_ai import RunContext
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
    from pydantic_ai.settings import ModelSettings

    from ._budget import BudgetGuard

__all__ = ["BudgetedModel"]


def _chars(messages: list[ModelMessage], parameters: ModelRequestParameters) -> int:
    tools: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "parameters": t.parameters_json_schema}
        for t in parameters.function_tools
    ]
    return len(ModelMessagesTypeAdapter.dump_json(messages)) + len(json.dumps(tools))


class BudgetedModel(WrapperModel):
    """A model whose every request first passes the run's `BudgetGuard`.

    `before` is awaited with a request's messages before it is sent (the run stores them).
    """

    def __init__(
        self,
        wrapped: Model,
        guard: BudgetGuard,
        *,
        before: Callable[[list[ModelMessage]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.guard = guard
        self.before = before

    def _capped(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        parameters: ModelRequestParameters,
    ) -> ModelSettings | None:
        if self.guard.unbounded:  # no budget: the request's size is not needed
            return settings
        current = (settings or {}).get("max_tokens")
        cap = self.guard.before(_chars(messages, parameters), current)
        if cap is None:
            return settings
        return {**(settings or {}), "max_tokens": cap}

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if self.before is not None:
            await self.before(messages)
        settings = self._capped(messages, model_settings, model_request_parameters)
        response = await self.wrapped.request(messages, settings, model_request_parameters)
        self.guard.after(response.usage.input_tokens, response.usage.output_tokens)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        if self.before is not None:
            await self.before(messages)
        settings = self._capped(messages, model_settings, model_request_parameters)
        stream: StreamedResponse | None = None
        try:
            async with self.wrapped.request_stream(
                messages, settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        finally:
            if stream is None:
                self.guard.after(0, 0)
            else:
                self.guard.after(stream.usage.input_tokens, stream.usage.output_tokens)
