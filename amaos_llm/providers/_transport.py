"""How an HTTP provider's SDK client sends: through aiohttp or the SDK's own default, and how many
connections its pool holds. The provider modules ask here; each builds its SDK's client itself.

aiohttp, when installed (the `fast` extra), because every SDK sends far more per core through it:
at 500 concurrent calls against the bench's loopback server, 3.5–6× the requests per second of
its default httpx/httpx2 client, whose pool does work in proportion to connections × waiting
requests on every request (bench/README.md has the figures). Without aiohttp, or on a trio event
loop (aiohttp runs only on asyncio), each SDK keeps its default client, with the same pool size.

The pool holds `max_connections` (default `DEFAULT_MAX_CONNECTIONS`), all of them kept alive:
an HTTP/1.1 call holds a connection for its whole length, and LLM calls are long, so a pool
smaller than the calls in flight caps throughput; a pool that closes what it opened (httpx's
default keeps 20 or 100 of them) reconnects on every call. Calls beyond the pool wait at a FIFO
gate (`Provider.http_slots`), never inside the pool: aiohttp's pool is not fair (a call arriving
as a connection frees up takes it ahead of those already waiting), and with 500 calls on 250
connections its p99 was 12× its median; behind the gate, 1.2×.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Literal

from amaos_llm.errors import ConfigError

if TYPE_CHECKING:
    from amaos_llm.config import ModelSpec

# openai's and anthropic's own default; a process opening more sockets than this to one server
# is more likely to run out of file descriptors than to go faster.
DEFAULT_MAX_CONNECTIONS = 1000
FAST_EXTRA = "amaos-llm[fast]"

Transport = Literal["aiohttp", "default"]


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    if module in sys.modules:  # None there means its import was blocked
        return sys.modules[module] is not None
    return find_spec(module) is not None


def pool_size(spec: ModelSpec) -> int:
    return spec.max_connections or DEFAULT_MAX_CONNECTIONS


def choose_transport(spec: ModelSpec, *modules: str) -> Transport:
    """`spec.http_transport` when set; else aiohttp when aiohttp and `modules` (what the SDK needs
    besides) are installed and the caller runs on asyncio; else the SDK's default."""
    wanted = spec.http_transport
    if wanted == "default":
        return "default"
    missing = [m for m in ("aiohttp", *modules) if not installed(m)]
    if wanted == "aiohttp":
        if missing:
            raise ConfigError(
                f"{spec.name}: http_transport 'aiohttp' needs {', '.join(missing)}: pip install '{FAST_EXTRA}'"
            )
        return "aiohttp"
    return "aiohttp" if not missing and _on_asyncio() else "default"


def _on_asyncio() -> bool:
    import asyncio  # loaded already by whatever event loop is running

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no asyncio loop in this thread: trio, or no loop at all
        return False
    return True


def pool_limits(spec: ModelSpec, httpx_module: Any) -> Any:
    """`httpx_module.Limits` (httpx's or httpx2's) for `spec`'s pool, every connection kept alive."""
    n = pool_size(spec)
    return httpx_module.Limits(max_connections=n, max_keepalive_connections=n)


def stainless_http_client(spec: ModelSpec, sdk: Any) -> Any:
    """The HTTP client for `openai` or `anthropic` (generated alike, with the same client classes):
    `DefaultAioHttpClient` or `DefaultAsyncHttpxClient` (on httpx2 despite its name), with our pool."""
    import httpx2

    limits = pool_limits(spec, httpx2)
    if choose_transport(spec) == "aiohttp":
        return sdk.DefaultAioHttpClient(limits=limits)
    return sdk.DefaultAsyncHttpxClient(limits=limits)
