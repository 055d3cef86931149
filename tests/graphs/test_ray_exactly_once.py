"""A batch that Ray re-runs writes and settles once (issue 14's "nothing lost, nothing twice").

A worker is killed mid-batch at a moment the test controls: the provider has answered the first few
runs and holds the next ones (so the dead worker's in-flight runs were never answered, never paid).
Ray restarts the worker and re-runs its batches; the runs the dead worker finished must not be run,
nor paid, again. Checked on a real local Ray, against the OpenAI fake and, for the shared budget, a
real redis-server."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # see tests/graphs/conftest.py
ray = pytest.importorskip("ray")

from amaos_llm import LLMManager  # noqa: E402 - after the environment Ray reads at import
from amaos_llm.state_redis import RedisStateStore  # noqa: E402
from graphs.batch_run import run_batch  # noqa: E402
from graphs.executors import RayExecutor  # noqa: E402
from graphs.pipeline import load_pipeline  # noqa: E402
from tests.support.fake_server import Recorded, Reply  # noqa: E402
from tests.support.fakes import OpenAIFake  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

PRICE = Decimal("0.001")  # per 1k input and output tokens


class HeldFake(OpenAIFake):
    """Answers the first `answer_first` chat requests, then holds every new one until `release()`;
    a held request is then failed (its caller is gone by then) and later ones are answered.
    `answered` counts the prompts answered: what a provider would bill."""

    def __init__(self, answer_first: int) -> None:
        super().__init__()
        self.answer_first = answer_first
        self.answered: Counter[str] = Counter()
        self.held = 0
        self._passed = 0
        self._released = threading.Event()
        self._count = threading.Lock()

    def release(self) -> None:
        self._released.set()

    def route(self, req: Recorded) -> Reply:
        if req.path != "/v1/chat/completions":
            return super().route(req)
        with self._count:
            hold = self._passed >= self.answer_first and not self._released.is_set()
            self._passed += not hold
            self.held += hold
        if hold:
            self._released.wait(60)
            return Reply(503, self.error_body(503, "held until the caller was gone"))
        reply = super().route(req)
        with self._count:
            self.answered[req.body["messages"][-1]["content"]] += 1
        return reply


def write_job(tmp_path: Path, fake: HeldFake, state: str, n: int) -> tuple[Path, Path, Path]:
    models = tmp_path / "models.yaml"
    models.write_text(f"{state}models:\n  - {{name: fake, provider: openai_compatible, model: test-model, "
                      f"base_url: '{fake.url}', api_key: sk-test, max_retries: 0, "
                      f"cost_per_1k_input: '{PRICE}', cost_per_1k_output: '{PRICE}'}}\n")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"name: p\nnodes:\n  - {{id: llm, type: llm_manager, config: {{config_path: {models}}}}}\n")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"input": f"item {i}", "id": f"k{i}"}) + "\n" for i in range(n)))
    return models, pipeline, inputs


async def wait_until(what: str, ready: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await anyio.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_worker_killed_mid_batch_writes_each_input_once_and_pays_for_none_twice(
    tmp_path: Path, ray_address: str, redis_server: RedisServer, backend: str
) -> None:
    n, first, concurrency = 40, 10, 4
    prefix = f"t{uuid.uuid4().hex}:"
    state = (f"budget_usd: 10\nstate: {{backend: redis, url: '{redis_server.url}', prefix: '{prefix}'}}\n"
             if backend == "redis" else "")
    with HeldFake(answer_first=first) as fake:
        models, pipeline_path, inputs = write_job(tmp_path, fake, state, n)
        out = tmp_path / "out.jsonl"
        # One worker holds both batches: the killed one has runs finished and runs in flight in each.
        executor = RayExecutor(batch_size=n // 2, concurrency=concurrency)

        async def job() -> Any:
            async with anyio.create_task_group() as tg:
                done: dict[str, Any] = {}

                async def run() -> None:
                    done["summary"] = await run_batch(load_pipeline(pipeline_path), inputs, out, concurrency,
                                                      executor=executor)

                tg.start_soon(run)

                async def quiet() -> bool:  # the first runs answered and journaled, the next ones held
                    if fake.held < concurrency or not executor.journal_name:
                        return False
                    return bool(await ray.get_actor(executor.journal_name).size.remote() == first)

                await wait_until("the first runs to finish and the next to be held", quiet)
                worker = ray.get_actor(executor.actor_names[0])
                pid = await worker.ready.remote()
                ray.kill(worker, no_restart=False)  # as a crash: Ray restarts it and re-runs its two batches
                await wait_until("the worker to die", lambda: anyio.to_thread.run_sync(gone, pid))
                fake.release()
            return done["summary"]

        summary = anyio.run(job)

    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == [f"k{i}" for i in range(n)]
    assert all(r["ok"] and r["output"] == f"echo: item {i}" for i, r in enumerate(got))
    assert summary.runs == n and summary.failed == 0
    # Each prompt answered once: the re-run batches took the dead worker's finished runs from the journal.
    assert fake.held == concurrency and fake.answered == Counter(f"item {i}" for i in range(n))
    if backend == "redis":  # the shared ledger was charged once per input, exactly what the records say
        assert anyio.run(shared_spent, models, redis_server.url, prefix) == sum(Decimal(r["cost_usd"]) for r in got)


async def shared_spent(models: Path, url: str, prefix: str) -> Decimal:
    """What the job's shared budget spent, read by a manager of the same model file."""
    store = RedisStateStore(url, prefix=prefix)
    try:
        status = await LLMManager.from_yaml(models, state_store=store).budget_status()
    finally:
        await store.aclose()
    assert status is not None
    return status["spent"]
