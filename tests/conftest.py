import pytest

pytest_plugins = [
    "tests.support.fixtures", "tests.support.real_model", "tests.support.offline", "tests.support.redis_server",
]


@pytest.fixture
def anyio_backend() -> str:
    # The SDKs under test are asyncio-only (httpx2's asyncio transport); the library itself is anyio.
    return "asyncio"
