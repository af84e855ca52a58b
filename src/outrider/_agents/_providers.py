"""Model providers: which endpoint and key a `provider/model` name means, and what it costs.

A model is named `provider/model-id` (`openai/gpt-4.1`, `anthropic/claude-sonnet-4-5`,
`openrouter/meta-llama/llama-3.3-70b`, `ollama/qwen3`); `provider:model-id` is accepted too. The
built-in providers can be changed and others added in config (`[providers.NAME]`): any
OpenAI-compatible endpoint (vLLM, llama.cpp, LM Studio, …) or Anthropic's Messages API.

Every provider's HTTP client goes through a `LimitedTransport`, so every call is paced by the
model's rate limits and retried on 429/5xx/connection errors there (the SDKs' own retries are
off).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import httpx2
from pydantic import BaseModel, ConfigDict, Field

from ._limits import LimitedTransport, ModelLimiter, RateLimit

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pydantic_ai.models import Model

    from .._executors._protocol import CallLimiter


__all__ = [
    "BUILTIN_PROVIDERS",
    "SCRIPTED_PRICE",
    "MODEL_ALIASES",
    "ModelRef",
    "Price",
    "ProviderConfig",
    "ProviderError",
    "Providers",
]


class ProviderConfig(BaseModel):
    """One model provider (`[providers.NAME]` in config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    api: Literal["openai", "anthropic", "scripted"] = "openai"
    """The wire protocol: OpenAI Chat Completions (and compatibles) or Anthropic Messages;
    `scripted` is the built-in scripted model (no network; `outrider._agents._scripted`)."""
    base_url: str | None = None
    api_key_env: str | None = None
    """The environment variable holding the key."""
    api_key: str | None = None
    """The key itself (prefer `api_key_env`)."""
    needs_key: bool = True
    """False for local servers that take no key (Ollama, llama.cpp)."""
    rpm: float | None = Field(default=None, gt=0)
    """Requests per minute allowed per model of this provider."""
    tpm: float | None = Field(default=None, gt=0)
    """Tokens per minute allowed per model of this provider."""
    max_concurrency: int = Field(default=8, ge=1, le=1000)
    """The most calls in flight per model, and its agent tasks at once (the `model:` key,
    unless the operator sets that key's limit); throttling lowers it, success raises it back."""
    limit: int | None = Field(default=None, ge=1, le=100_000)
    """Agent tasks on this provider at once, over all its models: the `provider:NAME` key
    every such task holds (default: none)."""
    timeout: float = Field(default=600.0, gt=0)
    """Seconds one HTTP call may take."""
    models: dict[str, RateLimit] = Field(default_factory=dict)
    """Per-model rate limits, overriding the provider's (`[providers.NAME.models."id"]`)."""


class Price(BaseModel):
    """What a model costs, in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)


BUILTIN_PROVIDERS: dict[str, ProviderConfig] = {
    "openai": ProviderConfig(base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"),
    "anthropic": ProviderConfig(
        api="anthropic", base_url="https://api.anthropic.com", api_key_env="ANTHROPIC_API_KEY"
    ),
    "openrouter": ProviderConfig(
        base_url="https://openrouter.ai/api/v1", api_key_env="OPENROUTER_API_KEY"
    ),
    "ollama": ProviderConfig(base_url="http://127.0.0.1:11434/v1", needs_key=False),
    "scripted": ProviderConfig(api="scripted", needs_key=False),
}
"""Providers known without config; `[providers.NAME]` adds or replaces them."""

SCRIPTED_PRICE = Price(input=3.0, output=15.0)
"""What the scripted models' tokens are priced at, so that the demo shows a cost: a made-up
price (a mid-range model's), not money anyone spends."""

MODEL_ALIASES: dict[str, str] = {
    "sonnet": "anthropic/claude-sonnet-4-5",
    "opus": "anthropic/claude-opus-4-1",
    "haiku": "anthropic/claude-haiku-4-5",
}
"""Claude Code's model names, as used in `.claude/agents` files."""


class ProviderError(Exception):
    """A model name or provider setting that cannot work; the message says what to fix."""


_SCRIPTS = ("lead", "reader", "tester")
"""The scripts of the built-in `scripted` provider (`_scripted.SCRIPTS`, which needs
pydantic-ai, imported only when a scripted model runs)."""


def _scripted(ref: ModelRef) -> Model:
    from ._scripted import scripted_model

    if ref.model not in _SCRIPTS:
        raise ProviderError(
            f"Unknown script {ref.model!r} of the built-in scripted model; use "
            f"{', '.join('scripted/' + s for s in _SCRIPTS)}."
        )
    return scripted_model(ref.model)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A resolved model name."""

    provider: str
    model: str

    @property
    def name(self) -> str:
        """`provider/model`, the form used in keys and prices."""
        return f"{self.provider}/{self.model}"


class Providers:
    """Builds models for names, shares one limiter and HTTP client per model, prices usage.

    Args:
        providers: Config providers, added to (or replacing) the built-in ones.
        prices: Price per `provider/model` name.
        aliases: Extra short names (`fast = "openai/gpt-4.1-mini"`).
        default_model: The model of an agent that names none.
        environ: Where `api_key_env` is looked up (default: the process environment).
        on_limit: Called with (`model:<name>` key, new limit) when throttling moves a
            model's concurrency.
        shared_limiter: The limiter of a model (`provider/model`) kept elsewhere (in the
            daemon, for a worker process), instead of one of its own.
    """

    def __init__(
        self,
        providers: Mapping[str, ProviderConfig] | None = None,
        *,
        prices: Mapping[str, Price] | None = None,
        aliases: Mapping[str, str] | None = None,
        default_model: str | None = None,
        environ: Mapping[str, str] | None = None,
        on_limit: Callable[[str, int], None] | None = None,
        shared_limiter: Callable[[str], CallLimiter] | None = None,
    ) -> None:
        self.providers = {**BUILTIN_PROVIDERS, **(providers or {})}
        self.prices = {f"scripted/{name}": SCRIPTED_PRICE for name in _SCRIPTS}
        self.prices.update(prices or {})
        self.aliases = {**MODEL_ALIASES, **(aliases or {})}
        self.default_model = default_model
        self._environ = environ
        self.on_limit = on_limit
        self.shared_limiter = shared_limiter
        self._limiters: dict[str, ModelLimiter] = {}
        self._clients: dict[str, httpx2.AsyncClient] = {}

    def resolve(self, name: str | None) -> ModelRef:
        """The provider and model id of `name` (None: the default model).

        Raises:
            ProviderError: No model, or an unknown provider.
        """
        name = name or self.default_model
        if not name:
            raise ProviderError(
                "No model: name one in the agent's `model:` field, or set `default_model` in "
                'outrider.toml (e.g. default_model = "openai/gpt-4.1").'
            )
        name = self.aliases.get(name, name)
        provider, sep, model = name.partition("/")
        if not sep:
            provider, sep, model = name.partition(":")
        if not sep or not provider or not model:
            raise ProviderError(
                f"Invalid model {name!r}: write it as provider/model-id (e.g. openai/gpt-4.1)."
            )
        if provider not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise ProviderError(
                f"Unknown provider {provider!r} in model {name!r}; known: {known} "
                f"(add others as [providers.{provider}] in outrider.toml)."
            )
        return ModelRef(provider, model)

    def limit_of(self, provider: str) -> int | None:
        """The provider-wide task limit (`limit`), if one is set."""
        config = self.providers.get(provider)
        return None if config is None else config.limit

    def limits(self) -> dict[str, int]:
        """Every provider-wide task limit that is set, by provider."""
        return {name: c.limit for name, c in self.providers.items() if c.limit is not None}

    def limiter(self, ref: ModelRef) -> ModelLimiter:
        """The one limiter of a model."""
        limiter = self._limiters.get(ref.name)
        if limiter is None:
            config = self.providers[ref.provider]
            own = config.models.get(ref.model)
            limit = RateLimit(
                rpm=own.rpm if own and own.rpm else config.rpm,
                tpm=own.tpm if own and own.tpm else config.tpm,
            )
            key = f"model:{ref.name}"
            on_limit = self.on_limit
            limiter = ModelLimiter(
                ref.name,
                limit,
                max_concurrency=config.max_concurrency,
                on_concurrency=(lambda n: on_limit(key, n)) if on_limit else None,
            )
            self._limiters[ref.name] = limiter
        return limiter

    def limiter_named(self, name: str) -> ModelLimiter:
        """The limiter of model `provider/model`."""
        provider, _, model = name.partition("/")
        return self.limiter(ModelRef(provider, model))

    def _limiter_of(self, ref: ModelRef) -> CallLimiter:
        if self.shared_limiter is not None:
            return self.shared_limiter(ref.name)
        return self.limiter(ref)

    def _key(self, ref: ModelRef) -> str | None:
        config = self.providers[ref.provider]
        if config.api_key:
            return config.api_key
        env = self._environ if self._environ is not None else os.environ
        if config.api_key_env and env.get(config.api_key_env):
            return env[config.api_key_env]
        if not config.needs_key:
            return "none"
        where = (
            f"set {config.api_key_env}" if config.api_key_env
            else f"set providers.{ref.provider}.api_key_env"
        )  # fmt: skip
        raise ProviderError(
            f"No API key for model {ref.name}: {where} (or providers.{ref.provider}.api_key_env "
            "in outrider.toml)."
        )

    def _client(self, ref: ModelRef) -> httpx2.AsyncClient:
        client = self._clients.get(ref.provider)
        if client is None:
            config = self.providers[ref.provider]
            # The limiter bounds the calls in flight (`max_concurrency` per model); a pool
            # capped below it (httpx's default is 100) would queue calls it has let through.
            pool = httpx2.Limits(max_connections=None, max_keepalive_connections=100)
            transport = LimitedTransport(
                httpx2.AsyncHTTPTransport(limits=pool),
                lambda model: self._limiter_of(ModelRef(ref.provider, model)),
            )
            client = httpx2.AsyncClient(transport=transport, timeout=config.timeout)
            self._clients[ref.provider] = client
        return client

    def model(self, ref: ModelRef) -> Model:
        """A pydantic-ai model for `ref`, calling through the limited client.

        Raises:
            ProviderError: The provider has no key or no base URL.
        """
        config = self.providers[ref.provider]
        if config.api == "scripted":
            return _scripted(ref)
        key = self._key(ref)
        if not config.base_url:
            raise ProviderError(f"Provider {ref.provider!r} has no base_url; set it in config.")
        if config.api == "anthropic":
            from anthropic import AsyncAnthropic
            from pydantic_ai.models.anthropic import AnthropicModel
            from pydantic_ai.providers.anthropic import AnthropicProvider

            anthropic_client = AsyncAnthropic(
                base_url=config.base_url, api_key=key, max_retries=0, http_client=self._client(ref)
            )
            return AnthropicModel(
                ref.model, provider=AnthropicProvider(anthropic_client=anthropic_client)
            )
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        from ._validating import ValidatingOpenAI

        openai_client = ValidatingOpenAI(
            base_url=config.base_url, api_key=key, max_retries=0, http_client=self._client(ref)
        )
        return OpenAIChatModel(ref.model, provider=OpenAIProvider(openai_client=openai_client))

    def cost(self, ref: ModelRef, input_tokens: int, output_tokens: int) -> float | None:
        """USD for the tokens, or None when the model has no price in config."""
        price = self.prices.get(ref.name)
        if price is None:
            return None
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
