"""Running a test on every anyio backend.

The suite's default `anyio_backend` (tests/conftest.py) is asyncio only, because the SDKs, the HTTP fakes
and the embedded model are asyncio-only. Tests of pure graph semantics touch none of them, and the
scheduler has an asyncio-specific fast path (graphs/taskgroup.py), so they run on trio as well to cover
the other path. Opt in per module with an `anyio_backend` fixture over BACKENDS, or per test with
`@all_backends`.
"""

from __future__ import annotations

import pytest

BACKENDS = ("asyncio", "trio")

all_backends = pytest.mark.parametrize("anyio_backend", BACKENDS)
