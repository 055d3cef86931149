"""amaos_llm: a local-first LLM manager.

Pick a model per request (local first, then cloud by priority or cost), fall back on errors and
timeouts, retry what is worth retrying, and report real token counts and exact costs::

    from amaos_llm import LLMManager

    async with LLMManager.from_yaml("config/model_priority.yaml") as manager:
        result = await manager.complete("Explain what AMAOS is.")
        print(result.model_name, result.tokens, result.cost)

Exceptions (all `LLMError`)::

    LLMError
    ├── ConfigError                 bad YAML or schema; names file, line and field
    ├── InvalidRequest              a call's arguments out of range (before anything is sent)
    ├── ModelNotFound               unknown model name; lists the known ones
    ├── ToolLoopLimit               run_tools: still calling tools after max_steps; `.steps`
    ├── AllModelsFailed             every candidate failed or was skipped; `.attempts`
    │   ├── DeadlineExceeded        the call's deadline ran out first
    │   └── BudgetExceeded          skipped for cost; `.remaining`, `.needed`, `.scope`
    └── ProviderError               one provider call failed
        ├── AuthenticationError     ├── RateLimitError (.retry_after)   ├── ProviderTimeout
        ├── ProviderConnectionError ├── BadRequestError                 ├── ServerError
        ├── ModelLoadError          └── ContextWindowExceeded (a BadRequestError)
"""

import logging

from amaos_llm.batch import BatchRequest, BatchResult
from amaos_llm.budget import Budget
from amaos_llm.config import Defaults, LLMConfig, ModelSpec, RoutingConfig
from amaos_llm.content import ImagePart, TextPart
from amaos_llm.errors import (
    AllModelsFailed,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    ContextWindowExceeded,
    DeadlineExceeded,
    InvalidRequest,
    LLMError,
    ModelLoadError,
    ModelNotFound,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
    StateStoreError,
    StreamInterrupted,
    ToolLoopLimit,
)
from amaos_llm.manager import LLMManager
from amaos_llm.shared_manager import get_llm_manager, set_llm_manager
from amaos_llm.state import Ledger, MemoryStore, Reservation, StateStore
from amaos_llm.streaming import Chunk, ChunkStream, StreamCallbacks
from amaos_llm.tokens import Estimate
from amaos_llm.tool_runs import ToolRun
from amaos_llm.tools import Tool
from amaos_llm.types import Attempt, LLMResult, Message, ToolCall, Usage

# A library logs; the application decides what shows (`amaos-llm --log-level`, or your own logging
# setup). Without this, Python's last-resort handler would print every fallback's warning to stderr.
logging.getLogger("amaos_llm").addHandler(logging.NullHandler())

__all__ = [
    "AllModelsFailed",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BatchRequest",
    "BatchResult",
    "Budget",
    "BudgetExceeded",
    "Chunk",
    "ChunkStream",
    "ConfigError",
    "ContextWindowExceeded",
    "DeadlineExceeded",
    "Defaults",
    "Estimate",
    "ImagePart",
    "InvalidRequest",
    "LLMConfig",
    "LLMError",
    "LLMManager",
    "LLMResult",
    "Ledger",
    "MemoryStore",
    "Message",
    "ModelLoadError",
    "ModelNotFound",
    "ModelSpec",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "Reservation",
    "RoutingConfig",
    "ServerError",
    "StateStore",
    "StateStoreError",
    "StreamCallbacks",
    "StreamInterrupted",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolLoopLimit",
    "ToolRun",
    "Usage",
    "get_llm_manager",
    "set_llm_manager",
]
