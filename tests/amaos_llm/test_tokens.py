"""Token estimates without a tokenizer, the byte bound budgets reserve, and context windows."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.pricing import PriceBook
from amaos_llm.tokens import Estimate, context_window, estimate, prompt_bound, prompt_tokens, window_skip_reason
from amaos_llm.types import Message

ROOT = Path(__file__).resolve().parents[2]


def msgs(*texts: str) -> list[Message]:
    return [Message(role="system" if i == 0 else "user", content=t) for i, t in enumerate(texts)]


def test_ascii_counts_four_characters_a_token_plus_four_per_message() -> None:
    assert prompt_tokens(msgs("x" * 400)) == 100 + 4
    assert prompt_tokens(msgs("abc", "de")) == 2 + 8  # ⌈5/4⌉ over all text, then 4 per message


def test_other_utf8_bytes_count_three_a_token_and_the_sum_is_rounded_up_once() -> None:
    # "é" is 2 bytes, "日本" 6 bytes, "a" ASCII: 1/4 + 8/3 = 2.92 → 3
    assert prompt_tokens(msgs("aé日本")) == 3 + 4
    assert prompt_tokens([]) == 0


def test_system_prompt_is_counted() -> None:
    assert prompt_tokens(msgs("s" * 40, "u" * 40)) == prompt_tokens(msgs("u" * 80)) + 4


def test_prompt_bound_is_utf8_bytes_plus_framing() -> None:
    assert prompt_bound(msgs("aé日本")) == 9 + 16 + 16
    assert prompt_bound(msgs("hi", "there")) == 7 + 2 * 16 + 16


def test_prompt_bound_covers_one_token_per_byte_and_every_estimate() -> None:
    for text in ("plain English words", "日本語のテキスト", "émoji 🎉🎉", "x" * 10_000):
        m = msgs(text)
        assert prompt_bound(m) >= len(text.encode()) + 4 >= prompt_tokens(m)


def test_window_skip_reason_wording() -> None:
    assert window_skip_reason(7000, 2000, 8192) == "context window: ~7000 prompt tokens + 2000 max_tokens exceed 8192"
    assert window_skip_reason(6000, 2000, 8192) is None  # 8000 fits
    assert window_skip_reason(10**9, 10**9, None) is None  # no window known: no check


def test_the_models_own_context_window_comes_first() -> None:
    # ModelSpec gains `context_window` with the budget wiring; it is read by name.
    spec = SimpleNamespace(context_window=4096, provider="embedded", n_ctx=2048, options={}, is_local=True)
    assert context_window(spec) == 4096  # type: ignore[arg-type]


def test_embedded_n_ctx_and_ollama_num_ctx_are_windows() -> None:
    assert context_window(ModelSpec(name="e", provider="embedded", model_path="/m.gguf", n_ctx=8192)) == 8192
    assert context_window(ModelSpec(name="o", provider="ollama", options={"num_ctx": 16384})) == 16384
    assert context_window(ModelSpec(name="o", provider="ollama")) is None


def test_cloud_windows_come_from_genai_prices_even_when_yaml_priced() -> None:
    claude = ModelSpec(name="c", provider="anthropic", model="claude-3-5-haiku", cost_per_1k_input=Decimal(1))
    assert context_window(claude) == 200_000
    deepseek = ModelSpec(name="d", provider="openai_compatible", model="deepseek-chat",
                         base_url="https://api.deepseek.com/v1")
    assert context_window(deepseek) == 64_000
    assert context_window(ModelSpec(name="u", provider="openai_compatible", model="x",
                                    base_url="https://llm.example.com")) is None


def test_local_windows_never_import_genai_prices() -> None:
    code = (
        "import sys; from amaos_llm.config import ModelSpec; from amaos_llm.tokens import context_window; "
        "print(context_window(ModelSpec(name='o', provider='ollama')), 'genai_prices' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["None", "False"]


def test_estimate_reports_worst_case_and_the_window_skip() -> None:
    spec = ModelSpec(name="mini", provider="openai", model="gpt-4o-mini")
    price = PriceBook().price(spec)
    est = estimate(spec, price, prompt_tokens=900, prompt_bound=4000, max_tokens=500, window=1000)
    assert est == Estimate(model_name="mini", prompt_tokens=900, max_tokens=500,
                           worst_case=price.worst_case(4000, 500),  # type: ignore[union-attr]
                           skip_reason="context window: ~900 prompt tokens + 500 max_tokens exceed 1000")
    assert est.worst_case == Decimal("0.0009")  # 4000 × $0.15/M + 500 × $0.60/M


@pytest.mark.parametrize(("budgeted", "reason"), [(False, None), (True, "price unknown: cannot be held to a budget")])
def test_an_unpriced_model_is_skipped_only_under_a_budget(budgeted: bool, reason: str | None) -> None:
    spec = ModelSpec(name="x", provider="openai_compatible", model="x", base_url="https://llm.example.com")
    est = estimate(spec, None, prompt_tokens=10, prompt_bound=40, max_tokens=5, window=None, budgeted=budgeted)
    assert (est.worst_case, est.skip_reason) == (None, reason)
