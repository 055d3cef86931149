"""One send to a provider, as the attempt loop makes it: bounded by a timeout, and whatever goes
wrong comes out as a `ProviderError`, so that an SDK's unmapped exception is that model's failure
(fallback goes on) while cancellation, KeyboardInterrupt and SystemExit pass through untouched."""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from amaos_llm.errors import ProviderError, ProviderTimeout
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

if TYPE_CHECKING:
    from amaos_llm.config import ModelSpec

MAX_ERROR = 300  # characters of an unexpected exception's text kept in the attempt's error


async def send(provider: Provider, request: ProviderRequest, timeout: float) -> ProviderReply:
    """The provider call, within `timeout`; whatever it raises comes out as a `ProviderError`."""
    loop = running_asyncio_loop()
    if loop is None:  # trio
        return await within(provider.complete(request), timeout, provider)  # type: ignore[no-any-return]
    # asyncio inline (no helper coroutine): this is every call's path
    deadline = Deadline(loop, loop.time() + timeout)
    try:
        return await provider.complete(request)
    except ProviderError:
        raise
    except TimeoutError:  # a provider's own socket/SDK timeout
        raise ProviderTimeout(f"no reply within {timeout:g} s") from None
    except Exception as exc:  # an SDK failure no mapping knows: this model failed; fallback goes on
        raise ProviderError(provider.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR]) from exc
    except BaseException as exc:
        if deadline.expired(exc):
            raise ProviderTimeout(f"no reply within {timeout:g} s") from None
        raise
    finally:
        deadline.close()


class Deadline:
    """`asyncio.timeout_at` reduced to what a send needs, at half its cost (it runs on every call):
    a timer that cancels the task, and the same `cancel`/`uncancel` bookkeeping, so a caller's own
    cancellation (an anyio scope, `asyncio.timeout`, Ctrl-C) still passes through as itself."""

    __slots__ = ("_task", "_cancelling", "_handle", "_fired")

    def __init__(self, loop: Any, when: float) -> None:
        task = sys.modules["asyncio"].current_task(loop)
        self._task, self._cancelling, self._fired = task, task.cancelling(), False
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def expired(self, exc: BaseException) -> bool:
        """Whether `exc`, raised through the call, is this deadline's cancellation alone (any other
        cancellation of the task stands, and goes on as it is)."""
        if not self._fired or not isinstance(exc, sys.modules["asyncio"].CancelledError):
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling  # type: ignore[no-any-return]

    def close(self) -> None:
        self._handle.cancel()
        if self._fired:  # it fired, but the call ended some other way: take its cancel request back
            self._fired = False
            self._task.uncancel()


async def within(awaitable: Awaitable[Any], timeout: float, provider: Provider) -> Any:
    """`awaitable` (a provider call, or a stream's next piece) within `timeout`: a `ProviderTimeout`
    after it, a `ProviderError` for anything unexpected it raises; `StopAsyncIteration` (a stream's
    end), cancellation, KeyboardInterrupt and SystemExit pass through."""
    loop = running_asyncio_loop()
    if loop is None:  # trio: anyio's cancel scope
        done, result = False, None
        with anyio.CancelScope(deadline=anyio.current_time() + timeout):
            result = await _guarded(awaitable, timeout, provider)
            done = True
        if not done:
            raise ProviderTimeout(f"no reply within {timeout:g} s")
        return result
    # On asyncio the task's own deadline (see `Deadline`): around an HTTP call, anyio's cancel scope
    # cost ~25 µs more than the raw SDK call, asyncio's ~8 µs.
    deadline = Deadline(loop, loop.time() + timeout)
    try:
        return await _guarded(awaitable, timeout, provider)
    except BaseException as exc:
        if deadline.expired(exc):
            raise ProviderTimeout(f"no reply within {timeout:g} s") from None
        raise
    finally:
        deadline.close()


def running_asyncio_loop() -> Any:
    asyncio = sys.modules.get("asyncio")  # not imported here: only an asyncio loop already running counts
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio
        return None


async def _guarded(awaitable: Awaitable[Any], timeout: float, provider: Provider) -> Any:
    try:
        return await awaitable
    except (ProviderError, StopAsyncIteration):
        raise
    except TimeoutError:  # a provider's own socket/SDK timeout
        raise ProviderTimeout(f"no reply within {timeout:g} s") from None
    except Exception as exc:  # an SDK failure no mapping knows: this model failed; fallback goes on
        raise ProviderError(provider.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR]) from exc


def loads_models(spec: ModelSpec) -> bool:
    """A local server that loads a model on demand: its first reply may wait for the load."""
    return spec.provider == "ollama" or (spec.provider == "openai_compatible" and spec.is_local)


async def load_model(provider: Provider, time_left: float | None) -> None:
    """Load an in-process model before its first send, within the call's deadline (if any)."""
    if time_left is None:
        await provider.warm_up()
        return
    with anyio.move_on_after(max(time_left, 0.0)) as scope:
        await provider.warm_up()
    if scope.cancelled_caught:
        raise ProviderTimeout(f"the model did not load within the {time_left:g} s left")


def without_unsupported(request: ProviderRequest, feature: str | None) -> ProviderRequest | None:
    """The request minus a parameter the server named as unsupported, if it is one we may drop."""
    if feature == "seed" and request.seed is not None:
        return replace(request, seed=None)
    if feature == "tools" and request.tools:
        return replace(request, tools=(), tool_choice="auto")
    if feature == "images":
        stripped = [m.model_copy(update={"content": m.text}) if not isinstance(m.content, str) and m.images else m
                    for m in request.messages]
        return replace(request, messages=stripped)
    if feature and feature in request.options:
        return replace(request, options={k: v for k, v in request.options.items() if k != feature})
    return None
