"""One manager for the whole process, for code that does not pass one around (the AMAOS seed's
`get_llm_manager()`): built from the default configuration on first use, replaceable."""

from __future__ import annotations

from amaos_llm.manager import LLMManager

_default: LLMManager | None = None


def get_llm_manager() -> LLMManager:
    """The process-wide manager, built from the default configuration on first use."""
    global _default
    if _default is None:
        _default = LLMManager()
    return _default


def set_llm_manager(manager: LLMManager | None) -> None:
    global _default
    _default = manager
