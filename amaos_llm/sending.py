"""One send to a provider, as the attempt loop makes it: bounded by a timeout, and whatever goes
wrong comes out as a `ProviderError`, so that an SDK's unmapped exception is that model's failure
(fallback goes on) while cancellation, KeyboardInterrupt and SystemExit pass through untouched."""

from __future__ import annotations

import anyio

from amaos_llm.errors import ProviderError, ProviderTimeout
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

MAX_ERROR = 300  # characters of an unexpected exception's text kept in the attempt's error


async def send(provider: Provider, request: ProviderRequest, timeout: float) -> ProviderReply:
    """The provider call, within `timeout`; whatever it raises comes out as a `ProviderError`."""
    # A bare CancelScope: anyio.fail_after's generator-based wrapper costs more than the rest of
    # the routing overhead put together.
    reply = None
    with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
        try:
            reply = await provider.complete(request)
        except ProviderError:
            raise
        except TimeoutError:  # a provider's own socket/SDK timeout
            raise ProviderTimeout(f"no reply within {timeout:g} s") from None
        except Exception as exc:  # an SDK failure no mapping knows: this model failed; fallback goes on
            raise ProviderError(provider.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR]) from exc
    if scope.cancelled_caught or reply is None:
        raise ProviderTimeout(f"no reply within {timeout:g} s")
    return reply
