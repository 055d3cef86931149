"""What a request will take before it is sent: token estimates, a byte bound, context windows.

No tokenizer and no download. Two counts, for two uses:

- `prompt_tokens` (ordering, context windows, tpm limits): ⌈ASCII chars/4 + other UTF-8 bytes/3⌉
  over all message text, the system prompt included, plus 4 per message. Close to real BPE counts
  for English and code, on the high side for other scripts.
- `prompt_bound` (money): the UTF-8 byte count plus framing. A byte-level tokenizer emits at most
  one token per byte, and chat templates add a few special and role tokens per message, so no
  model bills more prompt tokens than this: a budget that reserves it can never be overrun.

Call points: `prompt_tokens(messages)`, `prompt_bound(messages)`, `context_window(spec)`,
`window_skip_reason(prompt_tokens, max_tokens, window)`, `estimate(spec, price, ...)` → `Estimate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

from amaos_llm.types import Cost

if TYPE_CHECKING:
    from amaos_llm.config import ModelSpec
    from amaos_llm.pricing import Price

TOKENS_PER_MESSAGE = 4  # role and separators, as OpenAI counts them
# Upper bound of the template tokens around one message (start, role, separators, end) and of the
# reply's priming; "assistant" is 9 bytes, so 16 covers a byte-level role name with room to spare.
FRAME_BOUND_PER_MESSAGE = 16
FRAME_BOUND_PER_REQUEST = 16


class HasText(Protocol):
    @property
    def content(self) -> Any: ...


def _text(message: HasText) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    # A message of parts: its text (`Message.text`), not the list's repr, which counts field names.
    text = getattr(message, "text", None)
    return text if isinstance(text, str) else str(content)


def prompt_tokens(messages: Sequence[HasText]) -> int:
    """Estimated prompt tokens: ⌈ASCII chars/4 + other UTF-8 bytes/3⌉ + 4 per message."""
    twelfths = 0  # 3·ascii + 4·other, i.e. twelve times the estimate: exact integer arithmetic
    for message in messages:
        text = _text(message)
        if text.isascii():
            twelfths += 3 * len(text)
        else:
            ascii_chars = len(text.encode("ascii", "ignore"))
            twelfths += 3 * ascii_chars + 4 * (len(text.encode("utf-8", "surrogatepass")) - ascii_chars)
    return -(-twelfths // 12) + TOKENS_PER_MESSAGE * len(messages)


def prompt_bound(messages: Sequence[HasText]) -> int:
    """Prompt tokens no byte-level tokenizer exceeds: UTF-8 bytes plus framing."""
    size = FRAME_BOUND_PER_REQUEST
    for message in messages:
        text = _text(message)
        size += (len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))) \
            + FRAME_BOUND_PER_MESSAGE
    return size


def context_window(spec: ModelSpec) -> int | None:
    """The model's context window in tokens, or None when nobody says (then: no check).

    In order: its own `context_window`, an embedded model's `n_ctx`, an Ollama model's
    `options.num_ctx`, genai-prices' entry for a cloud model (YAML-priced ones too).
    """
    own = getattr(spec, "context_window", None)  # the field joins ModelSpec with the budget wiring
    if own is not None:
        return int(own)
    if spec.provider == "embedded" and spec.n_ctx is not None:
        return spec.n_ctx
    if spec.provider == "ollama" and spec.options.get("num_ctx") is not None:
        return int(spec.options["num_ctx"])
    if spec.is_local:  # never load genai-prices' table for a local model
        return None
    from amaos_llm.pricing import genai_model, genai_prices_ref

    ref = genai_prices_ref(spec)
    found = None if ref is None else genai_model(spec.model, *ref)
    return None if found is None else found[1].context_window


def window_skip_reason(prompt_tokens: int, max_tokens: int, window: int | None) -> str | None:
    """The skip reason when the request cannot fit the window, else None."""
    if window is None or prompt_tokens + max_tokens <= window:
        return None
    return f"context window: ~{prompt_tokens} prompt tokens + {max_tokens} max_tokens exceed {window}"


PRICE_UNKNOWN = "price unknown: cannot be held to a budget"


class Estimate(BaseModel):
    """What one candidate would take for a request, in try order; nothing is sent.

    `worst_case` is the most the request can cost on this model (None: price unknown);
    `skip_reason` is why routing would pass the model over, or None if it would be tried.
    """

    model_config = ConfigDict(frozen=True)

    model_name: str
    prompt_tokens: int
    max_tokens: int
    worst_case: Cost | None
    skip_reason: str | None = None


def worst_case(price: Price | None, bound: int, max_tokens: int) -> Decimal | None:
    """prompt_bound × the highest input-side rate at its tier + max_tokens × the output rate."""
    return None if price is None else price.worst_case(bound, max_tokens)


def estimate(
    spec: ModelSpec, price: Price | None, *, prompt_tokens: int, prompt_bound: int, max_tokens: int,
    window: int | None, budgeted: bool = False, skip_reason: str | None = None,
) -> Estimate:
    """One model's `Estimate`. `budgeted`: a budget or `max_cost` is in force, so an unpriced model
    is skipped. `skip_reason`: a reason the caller already knows (breaker open, over budget…)."""
    reason = window_skip_reason(prompt_tokens, max_tokens, window)
    if reason is None and budgeted and price is None:
        reason = PRICE_UNKNOWN
    return Estimate(model_name=spec.name, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                    worst_case=worst_case(price, prompt_bound, max_tokens), skip_reason=reason or skip_reason)
