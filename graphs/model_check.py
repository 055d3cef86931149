"""Reachability of the configured models, for `amaos-llm models`: each provider's `health()`."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from amaos_llm import ModelSpec
from amaos_llm.providers import provider_class

HEALTH_TIMEOUT = 5.0


async def check_models(specs: Sequence[ModelSpec], local_only: bool, timeout: float = HEALTH_TIMEOUT) -> dict[str, str]:
    """`{model name: "yes" | "no" | "skipped (...)" | "error: ..."}`, all models checked at once.

    Cloud models are not contacted under `local_only`, nor when their API key is missing.
    """
    status: dict[str, str] = {}

    async def check(spec: ModelSpec) -> None:
        if local_only and not spec.is_local:
            status[spec.name] = "skipped (local only)"
            return
        key = spec.resolve_key()
        if spec.key_required and key is None:
            status[spec.name] = "skipped (no key)"
            return
        status[spec.name] = await _health(spec, key, timeout)

    async with anyio.create_task_group() as tg:
        for spec in specs:
            tg.start_soon(check, spec)
    return {spec.name: status[spec.name] for spec in specs}


async def _health(spec: ModelSpec, key: object, timeout: float) -> str:
    try:
        provider = provider_class(spec.provider)(spec, key)  # type: ignore[arg-type]
        try:
            with anyio.fail_after(timeout):
                ok = await provider.health()
        finally:
            await provider.aclose()
    except TimeoutError:
        return f"no (no answer in {timeout:g} s)"
    except Exception as exc:  # noqa: BLE001 - shown in the table: one broken provider must not hide the others
        return f"error: {type(exc).__name__}: {exc}"
    return "yes" if ok else "no"
