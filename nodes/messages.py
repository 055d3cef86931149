"""What flows between nodes: a `TaskMessage` into a node, exactly one `ResultMessage` out.

Both are frozen pydantic models, so users can build, read and serialise them. Inside a run the
orchestrator builds them from values that are already valid, through `task_message`, `reply` and
`trusted`, which skip validation (pydantic's own `model_construct` costs more than validating,
and a run builds two messages per node step). Their states are copies of a key-sharing prototype:
quicker to build than a dict literal, and a result's takes 296 bytes where a plain dict takes 464
(a thousand runs in flight hold thousands of results).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from amaos_llm import Attempt, Message, Usage
from amaos_llm.inputs import MaxTokens, Temperature
from amaos_llm.types import Cost

ZERO_USAGE = Usage()
ZERO_COST = Decimal(0)

# The run-level overrides a payload may carry; LLM nodes pass them to the manager.
OVERRIDE_FIELDS = ("system_prompt", "temperature", "max_tokens", "force_model")


class Payload(BaseModel):
    """A run's input: a prompt or a chat, plus per-task overrides for the LLM calls it causes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    system_prompt: str | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    force_model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _input_alias(cls, data: Any) -> Any:
        # JSONL lines and CLI users say `input`; it is a prompt (a string) or a chat (a list).
        if isinstance(data, Mapping) and "input" in data:
            data = dict(data)
            value = data.pop("input")
            data["messages" if isinstance(value, list) else "prompt"] = value
        return data

    @classmethod
    def of(cls, value: Payload | str | Mapping[str, Any]) -> Payload:
        """The payload for a bare run input: a string is a prompt, a mapping holds the fields."""
        if isinstance(value, Payload):
            return value
        if isinstance(value, str):
            state = _PROMPT_STATE.copy()
            state["prompt"] = value
            return _instance(cls, state, _PROMPT_FIELDS)
        return cls.model_validate(value)

    @property
    def text(self) -> str:
        """The input as text: the prompt, else the last user message (what `{input}` names)."""
        if self.prompt is not None:
            return self.prompt
        for message in reversed(self.messages or ()):
            if message.role == "user":
                return message.content
        return ""


class ResultMessage(BaseModel):
    """The one result of one task. `error` is set (and `content` empty) when the node failed.

    LLM nodes fill `model_name`, `provider`, `usage`, `cost`, `latency` and `attempts`; other
    nodes report zero usage and cost 0 of their own. `cost` None means "price unknown".
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    run_id: str
    node_id: str
    content: str = ""
    model_name: str | None = None
    provider: str | None = None
    usage: Usage = ZERO_USAGE
    cost: Cost | None = ZERO_COST
    latency: float = 0.0
    attempts: tuple[Attempt, ...] = ()
    error: str | None = None
    route: str | None = None  # the route a RouterNode chose
    data: dict[str, Any] = Field(default_factory=dict)  # structured extras from functions and joins

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tokens(self) -> int:
        return self.usage.input_tokens + self.usage.output_tokens


class TaskMessage(BaseModel):
    """One unit of work for one node in one run.

    `payload` is the run's input (the same for every node downstream of the root that received
    it); `inputs` are the upstream results this task was built from, in edge order (empty for a
    root node); `metadata` is the run's metadata, one dict shared by all the run's tasks.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    run_id: str
    node_id: str
    payload: Payload
    inputs: tuple[ResultMessage, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)
    iteration: int = 0  # > 0 when a loop brought the task back to this node
    # The run's ledgers (`amaos_llm.Budget`s: the run's cap, the node's own cap for this run, a
    # cap shared by several runs) that an LLM node passes to its manager as `budget=`. Live
    # objects, not data: left out of dumps and reprs.
    budget: tuple[Any, ...] = Field(default=(), exclude=True, repr=False)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def source_ids(self) -> tuple[str, ...]:
        """The task ids of the upstream results this task came from."""
        return tuple(r.task_id for r in self.inputs)

    @property
    def content(self) -> str:
        """The upstream content: one input's, several joined by blank lines, or the run's input."""
        inputs = self.inputs
        if len(inputs) == 1:
            return inputs[0].content
        if inputs:
            return "\n\n".join(r.content for r in inputs)
        return self.payload.text

    def reply(self, content: str = "", **fields: Any) -> ResultMessage:
        """This task's result. `fields` must already have the right types (they are not validated)."""
        if fields:
            return trusted(
                ResultMessage, task_id=self.task_id, run_id=self.run_id, node_id=self.node_id, content=content, **fields
            )
        # The common reply, a plain content: built without the generic path's merging.
        state = _REPLY_STATE.copy()
        state["task_id"] = self.task_id
        state["run_id"] = self.run_id
        state["node_id"] = self.node_id
        state["content"] = content
        state["data"] = {}
        return _instance(ResultMessage, state, _REPLY_FIELDS)

    def fail(self, error: str) -> ResultMessage:
        return self.reply(error=error)


def task_message(
    task_id: str, run_id: str, node_id: str, payload: Payload, inputs: tuple[ResultMessage, ...],
    metadata: dict[str, Any], iteration: int, budget: tuple[Any, ...] = (),
) -> TaskMessage:
    """A `TaskMessage` from valid values, unvalidated: the orchestrator builds one per node step."""
    state = _TASK_STATE.copy()
    state["task_id"] = task_id
    state["run_id"] = run_id
    state["node_id"] = node_id
    state["payload"] = payload
    state["inputs"] = inputs
    state["metadata"] = metadata
    state["iteration"] = iteration
    if budget:  # the prototype holds the empty default: nothing to set for a run without a cap
        state["budget"] = budget
        return _instance(TaskMessage, state, _BUDGETED_TASK_FIELDS)
    return _instance(TaskMessage, state, _TASK_FIELDS)


M = TypeVar("M", bound=BaseModel)


def trusted(cls: type[M], **values: Any) -> M:
    """An instance of the pydantic model `cls` from values known to be valid, not validated.

    For the orchestrator's hot loop and for results it assembles itself. It does what
    `model_construct` does, minus the per-field default handling that makes that slower than
    validating. Fields left out take their defaults; a `dict` default is fresh per instance.
    """
    defaults, fresh = _defaults(cls)
    state = defaults.copy()
    state.update(values)
    for name in fresh:
        if state[name] is None:
            state[name] = {}
    names = tuple(values)
    try:
        fields_set = _FIELDS_SET[cls, names]
    except KeyError:
        fields_set = _FIELDS_SET[cls, names] = set(names)
    return _instance(cls, state, fields_set)


def blank_state(cls: type[BaseModel]) -> dict[str, Any]:
    """A fresh `__dict__` for `cls` holding its defaults (a key-sharing copy), for hot paths that
    build one model often: set every field, then `assemble`. `trusted` is the simpler way."""
    return _defaults(cls)[0].copy()


def assemble(cls: type[M], state: dict[str, Any]) -> M:
    """An instance of `cls` whose `__dict__` is `state` (from `blank_state`, every field set), unvalidated."""
    try:
        fields_set = _ALL_FIELDS[cls]
    except KeyError:
        fields_set = _ALL_FIELDS[cls] = set(cls.model_fields)
    return _instance(cls, state, fields_set)


def _instance(cls: type[M], state: dict[str, Any], fields_set: set[str]) -> M:
    # One shared set per field combination: these models are frozen, and pydantic copies the set
    # before changing it (model_copy), so sharing saves an allocation per message.
    obj = _new(cls)
    _set(obj, "__dict__", state)
    _set_fields_set(obj, fields_set)  # the slots' own setters: no attribute lookup by name
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


_new = object.__new__
_set = object.__setattr__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _defaults(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[str, ...]]:
    try:
        return _DEFAULTS[cls]
    except KeyError:
        entry = _DEFAULTS[cls] = _defaults_of(cls)
        return entry


def _defaults_of(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[str, ...]]:
    # Required fields get a placeholder so the dict keeps the declared field order.
    defaults = _shared_keys_state(cls, {
        name: None if field.is_required() or field.default_factory is not None else field.default
        for name, field in cls.model_fields.items()
    })
    fresh = tuple(name for name, field in cls.model_fields.items() if field.default_factory is dict)
    return defaults, fresh


def _shared_keys_state(cls: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """`values` as an instance `__dict__` whose keys live in `cls` (CPython's key-sharing dict).

    Its copies keep sharing the keys and store only the values: a 13-field `ResultMessage` state
    takes 296 bytes instead of a dict literal's 464, and a thousand runs in flight hold thousands.
    Setting the attributes one by one on a blank instance is what gives the dict shared keys.
    """
    obj = _new(cls)
    for name, value in values.items():
        _set(obj, name, value)
    state: dict[str, Any] = object.__getattribute__(obj, "__dict__")
    return state


_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], tuple[str, ...]]] = {}
_FIELDS_SET: dict[tuple[type[BaseModel], tuple[str, ...]], set[str]] = {}
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}
_TASK_STATE = _defaults_of(TaskMessage)[0]
_BUDGETED_TASK_FIELDS = set(TaskMessage.model_fields)
_TASK_FIELDS = _BUDGETED_TASK_FIELDS - {"budget"}
_REPLY_STATE = _defaults_of(ResultMessage)[0]
_REPLY_FIELDS = {"task_id", "run_id", "node_id", "content"}
_PROMPT_STATE = _defaults_of(Payload)[0]
_PROMPT_FIELDS = {"prompt"}
