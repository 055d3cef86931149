import pytest
from pydantic import ValidationError

from amaos_llm import Usage
from nodes import Condition, ResultMessage


def result(**fields):
    return ResultMessage(task_id="t", run_id="r", node_id="n", **fields)


def holds(spec, **fields):
    return Condition.model_validate(spec).compile()(result(**fields))


@pytest.mark.parametrize(
    ("spec", "fields", "expected"),
    [
        ({"contains": "yes"}, {"content": "oh yes"}, True),
        ({"contains": "yes"}, {"content": "no"}, False),
        ({"equals": "stop"}, {"content": "stop"}, True),
        ({"regex": r"^\d+$"}, {"content": "123"}, True),
        ({"regex": r"^\d+$"}, {"content": "12a"}, False),
        ({"field": "error", "is_null": True}, {}, True),
        ({"field": "error", "is_null": True}, {"error": "x"}, False),
        ({"field": "error", "is_null": False}, {"error": "x"}, True),
        ({"field": "data.score", "one_of": [1, 2]}, {"data": {"score": 2}}, True),
        ({"field": "data.score", "one_of": [1, 2]}, {"data": {}}, False),
        ({"field": "usage.total_tokens", "equals": 7}, {"usage": Usage(input_tokens=3, output_tokens=4)}, True),
        ({"route": "left"}, {"route": "left"}, True),
        ({"route": "left"}, {"route": "right"}, False),
        ({"not": {"contains": "x"}}, {"content": "abc"}, True),
        ({"all": [{"contains": "a"}, {"contains": "b"}]}, {"content": "ab"}, True),
        ({"all": [{"contains": "a"}, {"contains": "z"}]}, {"content": "ab"}, False),
        ({"any": [{"contains": "z"}, {"contains": "b"}]}, {"content": "ab"}, True),
        ({"field": "missing.path", "is_null": True}, {}, True),
    ],
)
def test_condition_holds(spec, fields, expected):
    assert holds(spec, **fields) is expected


def test_equals_none_is_a_real_test():
    assert holds({"field": "route", "equals": None}) is True


def test_a_condition_needs_exactly_one_test():
    with pytest.raises(ValidationError, match="exactly one of"):
        Condition.model_validate({"contains": "a", "regex": "b"})


def test_an_empty_condition_is_rejected():
    with pytest.raises(ValidationError, match="got none"):
        Condition.model_validate({})


def test_an_invalid_regex_is_rejected_when_loaded():
    with pytest.raises(ValidationError, match="invalid regular expression"):
        Condition.model_validate({"regex": "("})


def test_unknown_keys_are_rejected():
    with pytest.raises(ValidationError, match="extra"):
        Condition.model_validate({"startswith": "a"})


def test_field_does_not_combine_with_route():
    with pytest.raises(ValidationError, match="does not apply"):
        Condition.model_validate({"field": "content", "route": "a"})


def test_to_data_round_trips():
    spec = {"not": {"all": [{"field": "error", "is_null": True}, {"regex": "a+"}]}}
    assert Condition.model_validate(spec).to_data() == spec
