"""The exception tree. Everything the library raises on purpose is an `LLMError`::

    LLMError
    ├── ConfigError                 bad YAML or schema; carries path, line and field
    ├── InvalidRequest              a call's own arguments are out of range (also a ValueError)
    ├── ModelNotFound               force_model / fallback chain names an unknown model
    ├── AllModelsFailed             every candidate failed or was skipped; carries the attempts
    │   ├── DeadlineExceeded        the call's deadline ran out first
    │   └── BudgetExceeded          nothing answered and a model was skipped for cost
    ├── StreamInterrupted           a stream failed after yielding text; carries partial_text
    ├── ToolLoopLimit               run_tools: the model still called tools after max_steps
    └── ProviderError               one provider call failed (mapped from the SDK's exception)
        ├── AuthenticationError     401/403, or a required API key is missing
        ├── RateLimitError          429; `retry_after` seconds when the server said
        ├── ProviderTimeout         the call ran past its timeout
        ├── ProviderConnectionError refused, reset, DNS, cut mid-stream
        ├── BadRequestError         4xx the request itself caused (including unknown model id)
        │   └── ContextWindowExceeded   the prompt (plus max_tokens) does not fit the model's context
        ├── ServerError             5xx or an error event mid-stream
        └── ModelLoadError          a local model file is missing or unreadable

`ProviderError.retryable` says whether the same model may succeed on a second try (transient:
429, 5xx, timeouts, a connection lost after the request went out); `breaker_failure` whether the
failure says the model is unwell (a 400 or a 429 does not). An exception
a provider's SDK raises that no mapping knows becomes a plain `ProviderError` whose `__cause__` is
the original, so fallback still goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decimal import Decimal

    from amaos_llm.types import Attempt, Usage


class LLMError(Exception):
    """Base of every error amaos_llm raises on purpose."""


class ConfigError(LLMError, ValueError):
    """Invalid configuration. The message reads `path:line: field: what is wrong`."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = ":".join(str(p) for p in (path, line) if p is not None)
        parts = [p for p in (where, field) if p]
        super().__init__(": ".join([*parts, message]))


class InvalidRequest(LLMError, ValueError):
    """A call's arguments break the allowed ranges; raised before anything is sent. The message
    names the argument and what is allowed, e.g. `max_tokens: must be an int >= 1, got 0`."""


class ModelNotFound(LLMError, KeyError):
    def __init__(self, name: str, known: Sequence[str], providers: Sequence[str] = ()) -> None:
        self.name, self.known = name, list(known)
        what = "model or provider" if providers else "model"
        message = f"unknown {what} {name!r}; known models: {', '.join(known) or '(none)'}"
        if providers:
            message += f"; known providers: {', '.join(providers)}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class AllModelsFailed(LLMError):
    """No model produced an answer. `attempts` lists every model tried or skipped, in order."""

    def __init__(self, attempts: Sequence[Attempt], reason: str = "all models failed") -> None:
        self.attempts = list(attempts)
        lines = [f"  - {a.model_name} ({a.provider}): {a.outcome}: {a.error or ''}".rstrip(": ") for a in attempts]
        detail = "\n".join(lines) if lines else "  (no models configured)"
        super().__init__(f"{reason}:\n{detail}")


class DeadlineExceeded(AllModelsFailed):
    """The call's `deadline` ran out before a model answered; `attempts` as far as they got."""


class StreamInterrupted(LLMError):
    """A stream failed after it had yielded text, and `mid_stream` did not (or could no longer)
    carry it on. `partial_text`: the text yielded since the last reset; `usage`/`cost`: summed over
    the attempts that reported usage (None when none did); the failure is the `__cause__`."""

    def __init__(
        self, message: str, *, partial_text: str, model_name: str | None, attempts: Sequence[Attempt],
        usage: Usage | None, cost: Decimal | None,
    ) -> None:
        self.partial_text, self.model_name, self.attempts = partial_text, model_name, list(attempts)
        self.usage, self.cost = usage, cost
        super().__init__(message)


class ToolLoopLimit(LLMError):
    """`run_tools` took `max_steps` steps and the model still asked for tools. `steps` (the `LLMResult`
    of each step) and `messages` (the conversation so far, every call answered) let a caller go on."""

    def __init__(self, message: str, *, steps: Sequence[Any], messages: Sequence[Any]) -> None:
        super().__init__(message)
        self.steps = list(steps)
        self.messages = list(messages)


class BudgetExceeded(AllModelsFailed):
    """Nothing answered and at least one model was skipped for cost (over a budget, over
    `max_cost`, or unpriced under one). `remaining`: what the tightest limit had left (for
    `max_cost`, the cap itself); `needed`: the cheapest worst case among the models skipped for
    cost (None if none of them had a price); `scope`: `call|manager|run|node|budget`."""

    def __init__(
        self, attempts: Sequence[Attempt], *, remaining: Decimal, needed: Decimal | None, scope: str
    ) -> None:
        self.remaining, self.needed, self.scope = remaining, needed, scope
        wanted = "an unpriced model" if needed is None else f"worst case ${needed}"
        super().__init__(attempts, f"over budget ({scope}): {wanted}, remaining ${remaining}")


class StateStoreError(LLMError):
    """The shared state store (Redis) could not be reached or failed; names its URL, never a password.
    Budgeted calls refuse rather than spend unbudgeted (`state.on_error: closed`)."""


class ProviderError(LLMError):
    retryable = False
    breaker_failure = True

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        self.status_code = status_code
        self.retry_after = retry_after  # seconds the server asked to wait (429/503/529), if it said
        super().__init__(message)


class AuthenticationError(ProviderError):
    pass


class RateLimitError(ProviderError):
    retryable = True
    breaker_failure = False  # a busy model is not a broken one; Retry-After says when to come back

    def __init__(self, message: str, *, status_code: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)


class ProviderTimeout(ProviderError):
    retryable = True


class ProviderConnectionError(ProviderError):
    """`connected`: the request had gone out when the connection broke (a reset, a cut reply), so
    a second try may pass; a refused connection or a failed lookup will fail the same way again."""

    def __init__(self, message: str, *, connected: bool = False) -> None:
        super().__init__(message)
        self.connected = self.retryable = connected


class BadRequestError(ProviderError):
    """`unsupported`: the request parameter the server named, in a structured field, as one it
    does not support (e.g. `seed`); `feature_fallback` may re-send without it."""

    breaker_failure = False  # the request's fault, not the model's

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None,
        unsupported: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after)
        self.unsupported = unsupported


class ContextWindowExceeded(BadRequestError):
    """The model said the request is longer than its context window: another model may fit it."""


class ModelLoadError(ProviderError):
    """The model could not be loaded: missing weights or runtime, or a cold local server that did
    not load it within `load_timeout`. Not re-sent: loading again would fail (or take) the same."""


class ServerError(ProviderError):
    """5xx or an in-stream error from the provider: worth one more try."""

    retryable = True
