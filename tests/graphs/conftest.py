"""The graph tests' shared Ray: one local Ray per test session, for every module that runs jobs on it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray for the session, on 127.0.0.1, with this checkout's code for its workers."""
    # Read when Ray is imported and inherited by its processes: without it a local Ray listens on the
    # host's network address as well as on loopback.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    from graphs import executors

    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             runtime_env=executors._code_runtime_env(), logging_level=logging.WARNING, configure_logging=False)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), address
    yield address
    ray.shutdown()
