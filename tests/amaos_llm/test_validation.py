"""A validator accepts or rejects each answer; a rejection is re-asked on the same model with the reason,
then the next model starts afresh. Every answer is paid for, a rejected one too."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amaos_llm import AllModelsFailed, InvalidRequest, LLMConfig, LLMManager, LLMResult, Message

pytestmark = pytest.mark.anyio


class Model:
    """Answers from a script and keeps the messages of every request it got."""

    def __init__(self, *answers: str) -> None:
        self.answers, self.seen = list(answers), []

    def __call__(self, messages: list[Message], **params: Any) -> dict[str, Any]:
        self.seen.append([(m.role, m.content) for m in messages])
        text = self.answers[min(len(self.seen), len(self.answers)) - 1]
        return {"content": text, "input_tokens": 100, "output_tokens": 10}


def numeric(result: LLMResult) -> bool | str:
    return True if result.content.isdigit() else f"{result.content!r} is not a number"


def manager(**kw: Any) -> LLMManager:
    return LLMManager(LLMConfig(), **kw)


async def test_an_accepted_answer_is_returned_as_is() -> None:
    m = manager()
    m.register_model("a", Model("42"))
    result = await m.complete("How many?", validator=numeric)
    assert (result.content, [a.outcome for a in result.attempts]) == ("42", ["success"])
    assert m.get_stats()["validation_retries"] == 0


async def test_a_rejection_is_re_asked_on_the_same_model_with_the_reason_and_both_answers_are_paid() -> None:
    model = Model("forty-two", "42")
    m = manager()
    m.register_model("a", model, cost_per_1k_input=Decimal("1"), cost_per_1k_output=Decimal("2"))
    result = await m.complete("How many?", validator=numeric)
    assert result.content == "42"
    assert model.seen[1] == [
        ("user", "How many?"),
        ("assistant", "forty-two"),
        ("user", "That answer was not accepted: 'forty-two' is not a number. Please answer again."),
    ]
    first, second = result.attempts
    assert (first.outcome, first.error, second.outcome) == ("rejected", "'forty-two' is not a number", "success")
    assert (first.usage.input_tokens, first.cost) == (100, Decimal("0.12"))  # type: ignore[union-attr]
    assert (result.usage.input_tokens, result.usage.output_tokens, result.cost) == (200, 20, Decimal("0.24"))
    stats = m.get_stats()
    assert (stats["validation_retries"], stats["retries"], stats["successes"]) == (1, 0, 1)
    by_model = stats["by_model"]["a"]
    assert (by_model["calls"], by_model["rejected"], by_model["successes"], by_model["input_tokens"]) == (2, 1, 1, 200)


async def test_each_re_ask_carries_every_earlier_rejection_and_the_next_model_starts_afresh() -> None:
    stubborn, other = Model("one", "two", "three"), Model("3")
    m = manager()
    m.register_model("stubborn", stubborn, priority=1)
    m.register_model("other", other)
    result = await m.complete("Count.", validator=numeric, validation_retries=2)
    assert result.model_name == "other" and result.content == "3"
    assert [role for role, _ in stubborn.seen[2]] == ["user", "assistant", "user", "assistant", "user"]
    assert other.seen == [[("user", "Count.")]]
    assert [(a.model_name, a.outcome) for a in result.attempts] == [
        ("stubborn", "rejected"), ("stubborn", "rejected"), ("stubborn", "rejected"), ("other", "success")]


async def test_when_every_answer_is_rejected_the_call_fails_listing_them() -> None:
    m = manager()
    m.register_model("a", Model("words"))
    with pytest.raises(AllModelsFailed) as info:
        await m.complete("How many?", validator=lambda r: False, validation_retries=0)
    assert [(a.outcome, a.error) for a in info.value.attempts] == [("rejected", "rejected by the validator")]


async def test_an_async_validator_and_the_managers_default_validator_are_used() -> None:
    async def short(result: LLMResult) -> bool | str:
        return len(result.content) < 5 or "too long"

    m = manager(validator=short)
    m.register_model("a", Model("far too long", "ok"))
    assert (await m.complete("hi")).content == "ok"
    assert (await m.complete("hi", validator=lambda r: True)).content == "ok"


async def test_a_validator_that_raises_or_answers_nonsense_reaches_the_caller() -> None:
    def broken(result: LLMResult) -> bool:
        raise KeyError("my bug")

    m = manager()
    m.register_model("a", Model("42"))
    with pytest.raises(KeyError, match="my bug"):
        await m.complete("hi", validator=broken)
    with pytest.raises(TypeError, match=r"a validator returns True, False or a reason \(str\), got int"):
        await m.complete("hi", validator=lambda r: 1)
    assert m.get_stats()["failures"] == 2


async def test_bad_validator_arguments_are_refused() -> None:
    m = manager()
    m.register_model("a", Model("42"))
    with pytest.raises(TypeError, match="validator: must be callable"):
        await m.complete("hi", validator="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="validation_retries: must be an int >= 0, got -1"):
        await m.complete("hi", validator=numeric, validation_retries=-1)
    with pytest.raises(TypeError, match="validator: must be callable"):
        LLMManager(LLMConfig(), validator=42)  # type: ignore[arg-type]


async def test_from_yaml_passes_the_validator_on_and_defaults_set_the_re_asks(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("defaults: {validation_retries: 0}\nmodels: [{name: a, provider: callable}]\n")
    m = LLMManager.from_yaml(path, validator=numeric)
    m.register_model("a", Model("nope", "7"))
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
