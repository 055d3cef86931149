"""Every call ends as exactly one of success, failure or cancelled, and so does every attempt sent;
an unexpected exception from a provider is that model's failure (fallback goes on); a call's own
bad arguments are refused before anything is sent."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amaos_llm import (
    AllModelsFailed,
    BadRequestError,
    InvalidRequest,
    LLMConfig,
    LLMManager,
    Message,
    ModelSpec,
    ServerError,
)

pytestmark = pytest.mark.anyio


def manager(**defaults: Any) -> LLMManager:
    return LLMManager(LLMConfig.model_validate({"defaults": {"retry_backoff": 0, **defaults}}))


def ok(messages: list[Message], **params: Any) -> dict[str, Any]:
    return {"content": "fine", "input_tokens": 3, "output_tokens": 2}


# -- unexpected exceptions ------------------------------------------------------------------------


async def test_an_unexpected_exception_is_that_models_failure_and_fallback_goes_on() -> None:
    def broken(messages: list[Message], **params: Any) -> str:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    m = manager()
    m.register_model("broken", broken, priority=10)
    m.register_model("backup", ok)
    result = await m.complete("hi")
    first = result.attempts[0]
    assert (first.model_name, first.outcome) == ("broken", "error")
    assert first.error == (
        "ProviderError: UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0: "
        "surrogates not allowed"
    )
    assert result.model_name == "backup"
    stats = m.get_stats()
    assert (stats["calls"], stats["successes"], stats["failures"]) == (1, 1, 0)
    assert stats["by_model"]["broken"]["failures"] == 1


async def test_a_reply_that_raises_when_read_is_that_models_failure() -> None:
    class Treacherous:
        @property
        def content(self) -> str:
            raise RuntimeError("the reply fell apart")

    m = manager()
    m.register_model("odd", lambda messages, **params: Treacherous())
    with pytest.raises(AllModelsFailed) as info:
        await m.complete("hi")
    assert info.value.attempts[0].error == "ProviderError: RuntimeError: the reply fell apart"
    stats = m.get_stats()
    assert (stats["calls"], stats["successes"], stats["failures"]) == (1, 0, 1)


async def test_the_original_exception_is_the_provider_errors_cause() -> None:
    from amaos_llm.providers.callable import CallableProvider
    from amaos_llm.sending import send

    original = LookupError("deep inside the SDK")

    def fn(messages: list[Message], **params: Any) -> str:
        raise original

    provider = CallableProvider(ModelSpec(name="x", provider="callable"), fn=fn)
    request = _request()
    with pytest.raises(Exception) as info:
        await send(provider, request, 5.0)
    assert type(info.value).__name__ == "ProviderError" and info.value.__cause__ is original


async def test_an_unreachable_ollama_with_a_lone_surrogate_falls_back(ollama_fake: Any) -> None:
    spec = ModelSpec(name="ollama", provider="ollama", model="test-model", base_url=ollama_fake.url, priority=10)
    m = LLMManager(models=[spec])
    m.register_model("backup", ok)
    result = await m.complete("lone \ud800 surrogate")
    await m.aclose()
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("ollama", "error"), ("backup", "success")]
    assert (result.attempts[0].error or "").startswith("ProviderError: UnicodeEncodeError: ")
    assert ollama_fake.requests == []  # nothing reached the server


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_and_system_exit_pass_through_untouched(interrupt: type[BaseException]) -> None:
    raised = interrupt()

    def fn(messages: list[Message], **params: Any) -> str:
        raise raised

    m = manager()
    m.register_model("a", fn)
    m.register_model("b", ok, priority=-1)
    with pytest.raises(interrupt) as info:
        await m.complete("hi")
    assert info.value is raised
    stats = m.get_stats()
    assert (stats["calls"], stats["cancelled"], stats["by_model"]["a"]["cancelled"]) == (1, 1, 1)
    assert "b" not in stats["by_model"]  # no fallback after an interrupt


# -- the call's own arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens: must be an int >= 1, got 0"),
        ({"max_tokens": -1}, "max_tokens: must be an int >= 1, got -1"),
        ({"max_tokens": 2.5}, "max_tokens: must be an int >= 1, got 2.5"),
        ({"max_tokens": True}, "max_tokens: must be an int >= 1, got True"),
        ({"temperature": 5}, "temperature: must be a number from 0 to 2, got 5"),
        ({"temperature": -1.0}, "temperature: must be a number from 0 to 2, got -1.0"),
        ({"temperature": math.nan}, "temperature: must be a number from 0 to 2, got nan"),
        ({"temperature": "hot"}, "temperature: must be a number from 0 to 2, got 'hot'"),
        ({"prompt": None}, "prompt: must be a str, got NoneType"),
        ({"prompt": 42}, "prompt: must be a str, got int"),
        ({"system_prompt": 42}, "system_prompt: must be a str or None, got int"),
    ],
)
async def test_complete_refuses_bad_arguments_before_sending(kwargs: dict[str, Any], message: str) -> None:
    calls: list[int] = []
    m = manager()
    m.register_model("a", lambda messages, **params: calls.append(1) or "x")
    args = {"prompt": "hi", **kwargs}
    with pytest.raises(InvalidRequest) as info:
        await m.complete(args.pop("prompt"), **args)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert calls == []
    stats = m.get_stats()
    assert (stats["calls"], stats["failures"], stats["by_model"]) == (1, 1, {})


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "messages: must hold at least one message"),
        ("hello", "messages: must be a list of messages ({'role': ..., 'content': ...}), got str"),
        ([{"role": "wizard", "content": "hi"}],
         "messages[0]: role: must be one of system, user, assistant, tool, got 'wizard'"),
        ([{"role": "user", "content": "hi"}, {"role": "user"}], "messages[1]: content: Field required"),
        ([None], "messages[0]: must be a mapping with 'role' and 'content', got NoneType"),
    ],
)
async def test_chat_refuses_empty_or_malformed_messages(messages: Any, message: str) -> None:
    m = manager()
    m.register_model("a", ok)
    with pytest.raises(InvalidRequest) as info:
        await m.chat(messages)
    assert str(info.value) == message
    assert m.get_stats()["failures"] == 1


def test_yaml_payload_and_call_share_one_definition_of_the_ranges() -> None:
    from amaos_llm.inputs import MaxTokens, Temperature
    from nodes import Payload
    from nodes.llm import LLMNodeConfig

    for model in (ModelSpec, Payload, LLMNodeConfig):
        fields = model.model_fields
        assert fields["max_tokens"].annotation == MaxTokens | None, model
        assert fields["temperature"].annotation == Temperature | None, model


# -- cancellation and the counters' identities ----------------------------------------------


async def test_a_cancelled_call_is_counted_once_as_cancelled_and_its_latency_is_not_averaged() -> None:
    async def slow(messages: list[Message], **params: Any) -> str:
        await anyio.sleep(10)
        return "late"

    m = manager()
    m.register_model("slow", slow)
    with anyio.move_on_after(0.05):
        await m.complete("hi")
    stats = m.get_stats()
    assert (stats["calls"], stats["successes"], stats["failures"], stats["cancelled"]) == (1, 0, 0, 1)
    model = stats["by_model"]["slow"]
    assert (model["calls"], model["cancelled"], model["avg_latency"]) == (1, 1, 0.0)


async def test_a_cancelled_half_open_probe_frees_the_probe_slot() -> None:
    async def slow(messages: list[Message], **params: Any) -> str:
        await anyio.sleep(10)
        return "late"

    m = manager(breaker_threshold=1, breaker_reset=0.01)
    m.register_model("a", slow)
    breaker = m._targets.of(m.list_models()[0])[0].breaker
    breaker.record_failure()  # opened
    await anyio.sleep(0.02)  # half-open: the next call is the probe
    with anyio.move_on_after(0.05):
        await m.complete("hi")
    assert breaker.state == "half_open" and not breaker.is_open()


BEHAVIOURS = ("ok", "server_error", "bad_request", "unexpected", "timeout", "hang")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(
        st.tuples(
            st.lists(st.sampled_from(BEHAVIOURS), min_size=3, max_size=3),  # what each model does
            st.booleans(),  # the caller cancels after 20 ms
            st.sampled_from([None, 0]),  # max_tokens: 0 is refused before sending
        ),
        min_size=1, max_size=50,
    )
)
def test_counters_add_up_after_any_mix_of_outcomes_at_concurrency_50(plans: list[Any]) -> None:
    anyio.run(_check_counters, plans)


async def _check_counters(plans: list[Any]) -> None:
    m = manager(timeout=0.03, breaker_threshold=10_000)
    runs = {f"m{i}": 0 for i in range(3)}

    def model(name: str, index: int) -> Any:
        async def fn(messages: list[Message], **params: Any) -> str:
            runs[name] += 1
            behaviour = messages[-1].content.split()[index]
            if behaviour == "ok":
                return "fine"
            if behaviour == "server_error":
                raise ServerError("HTTP 503")  # retried once, then the next model
            if behaviour == "bad_request":
                raise BadRequestError("HTTP 400")
            if behaviour == "unexpected":
                raise ZeroDivisionError("a bug in an SDK")
            await anyio.sleep(0.2 if behaviour == "timeout" else 10)  # timeout: cut at 30 ms by the manager
            return "late"

        return fn

    for i, name in enumerate(runs):
        m.register_model(name, model(name, i), priority=-i)

    async def call(behaviours: list[str], cancel: bool, max_tokens: int | None) -> None:
        with anyio.move_on_after(0.02 if cancel else math.inf):
            try:
                await m.complete(" ".join(behaviours), max_tokens=max_tokens)
            except (AllModelsFailed, InvalidRequest):
                pass

    async with anyio.create_task_group() as tg:
        for plan in plans:
            tg.start_soon(call, *plan)
    stats = m.get_stats()
    assert stats["calls"] == len(plans)
    assert stats["calls"] == stats["successes"] + stats["failures"] + stats["cancelled"]
    for name, ran in runs.items():
        s = stats["by_model"].get(name, {"calls": 0, "successes": 0, "failures": 0, "timeouts": 0, "cancelled": 0})
        assert s["calls"] == s["successes"] + s["failures"] + s["timeouts"] + s["cancelled"], name
        assert s["calls"] == ran, name


def _request() -> Any:
    from amaos_llm.providers.base import ProviderRequest

    return ProviderRequest(messages=[Message(role="user", content="hi")], model="x", temperature=0.0, max_tokens=5)
