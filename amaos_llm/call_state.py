"""One call as the attempt loop sees it: the options it was made with (checked once, here), its
attempts so far, and what its answers cost (every answer is paid for, one a validator rejected too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from amaos_llm.capabilities import Needs, call_needs
from amaos_llm.config import Defaults
from amaos_llm.errors import InvalidRequest
from amaos_llm.history import check_history
from amaos_llm.inputs import check_sampling, tool_inputs
from amaos_llm.tools import Tool
from amaos_llm.types import Attempt, Message, Usage
from amaos_llm.validation import Validator, check_validator

if TYPE_CHECKING:
    from amaos_llm.spending import CallSpend
    from amaos_llm.streaming import StreamCall


class CallOptions(NamedTuple):
    """The per-call arguments of `complete()`/`chat()` besides the messages; None: the default.
    A tuple: built on every call, where a frozen dataclass would cost a microsecond and a half."""

    temperature: float | None = None
    max_tokens: int | None = None
    force_model: str | None = None
    deadline: float | None = None
    validator: Validator | None = None
    validation_retries: int | None = None
    cache: bool | None = None
    only: frozenset[str] | None = None  # the models this call may use (spoon_ai's `provider=`)
    max_cost: object | None = None  # caps this call's worst case (USD)
    budget: object | None = None  # extra `Budget`(s) this call reserves against
    # last, so that positional `call_options(...)` calls made before them keep their meaning
    tools: Any = None  # as given: functions, dicts or `Tool`s (checked in `CallState.begin`)
    tool_choice: str = "auto"
    response_format: Any = None  # a pydantic model class or an object JSON schema


NO_OPTIONS = CallOptions()
_UNSET = tuple(NO_OPTIONS)


def call_options(*values: object) -> CallOptions:
    """The options of one call, in `CallOptions` order; most calls give none, and share one instance."""
    return NO_OPTIONS if values == _UNSET else CallOptions(*values)  # type: ignore[arg-type]


@dataclass(slots=True)
class CallState:
    messages: list[Message]
    options: CallOptions
    start: float  # the clock reading when the call began
    until: float | None  # the clock reading at which the call's deadline runs out
    validator: Validator | None
    validation_retries: int
    attempts: list[Attempt] = field(default_factory=list)  # every model tried or passed over, in order
    usage: Usage | None = None  # every answer's tokens so far
    cost: Decimal | None = None  # their cost; None as soon as one answer's price is unknown
    sends: int = 0  # requests sent so far
    last_model: str | None = None  # the model of the last send, to tell a fallback from an endpoint move
    comebacks: list[float] | None = None  # seconds until targets passed over at send time free up
    warnings: list[str] | None = None
    stream: StreamCall | None = None  # set for `stream()`: its chunks go to the caller as they come
    trace: Any = None  # the call's telemetry (`amaos_llm.telemetry.CallTrace`) when a recorder is set
    attempt_trace: Any = None  # that of the attempt in flight
    fell_back_from: str | None = None  # the first model given up on, for the one warning a fallback logs
    spend: CallSpend | None = None  # the call's budgets (None: none in force)
    rate_ticket: Any = None  # (model name, its rate window's count of the last send to it)
    _prompt: int = -1  # `prompt()`, once asked
    tools: Sequence[Tool] = ()  # the call's tools, checked
    schema: dict[str, Any] | None = None  # the object JSON schema `response_format` stands for
    needs: Needs | None = None  # what it asks of a model beyond text (None: nothing)

    @classmethod
    def begin(
        cls, messages: list[Message], options: CallOptions, start: float, defaults: Defaults,
        validator: Validator | None,
    ) -> CallState:
        """The state of a call starting at `start`, after checking its options (`InvalidRequest`,
        or `TypeError` for a validator that is not callable); `validator`: the manager's default.
        A tool history that does not pair up is an `InvalidRequest` too, before any model is asked."""
        if options is NO_OPTIONS:  # the common case: every default
            until = None if defaults.deadline is None else start + defaults.deadline
            state = cls(messages, options, start, until, validator, defaults.validation_retries)
            for m in messages:  # inline: this runs on every call, and a plain chat needs nothing more
                if m.tool_calls or m.tool_call_id is not None or type(m.content) is not str:
                    check_history(messages)
                    state.needs = call_needs(messages, (), "auto", None)
                    break
            return state
        check_sampling(options.temperature, options.max_tokens)
        deadline = options.deadline
        if deadline is None:
            deadline = defaults.deadline
        elif type(deadline) not in (int, float) or not deadline > 0:
            raise InvalidRequest(f"deadline: must be a number of seconds > 0, got {deadline!r}")
        retries = options.validation_retries
        if retries is None:
            retries = defaults.validation_retries
        elif type(retries) is not int or retries < 0:
            raise InvalidRequest(f"validation_retries: must be an int >= 0, got {retries!r}")
        until = None if deadline is None else start + deadline
        tools: Any = ()
        schema = None
        if options.tools is not None or options.response_format is not None or options.tool_choice != "auto":
            tools, schema = tool_inputs(options.tools, options.tool_choice, options.response_format)
            needs = call_needs(messages, tools, options.tool_choice, schema)
        else:  # a plain call: only its messages can ask for more than text (the scan inlined, as above)
            needs = None
            for m in messages:
                if m.tool_calls or m.tool_call_id is not None or type(m.content) is not str:
                    needs = call_needs(messages, tools, options.tool_choice, schema)
                    break
        if needs is not None:
            check_history(messages)
        return cls(messages, options, start, until, check_validator(options.validator) or validator, retries,
                   tools=tools, schema=schema, needs=needs)

    def prompt(self) -> int:
        """The prompt's estimated tokens (`tokens.prompt_tokens`), counted on first use: only cost
        ordering, context windows and tpm limits need it, and most calls meet none of them."""
        if self._prompt < 0:
            from amaos_llm.tokens import prompt_tokens

            self._prompt = prompt_tokens(self.messages)
        return self._prompt

    def pay(self, usage: Usage, cost: Decimal | None) -> None:
        if self.usage is None:
            self.usage, self.cost = usage, cost
        else:
            self.usage += usage
            self.cost = None if cost is None or self.cost is None else self.cost + cost


def estimate_prompt_tokens(messages: list[Message]) -> int:
    # Only for ordering by estimated cost; billing uses the provider's own counts.
    # `text`, not `content`: a content of parts would count its parts, not its characters.
    return sum(len(m.content) if type(m.content) is str else len(m.text) for m in messages) // 4 + 4 * len(messages)
