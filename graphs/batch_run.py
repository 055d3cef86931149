"""`amaos-llm run --inputs IN [--output OUT]`: a pipeline over a JSONL file, streamed.

The inputs are read a line at a time and run by an executor (`graphs.executors`: in this process,
`concurrency` at a time, or on a Ray cluster); this module alone writes the records. Each is
written, in input order (or as it finishes), as soon as its turn comes, in one unbuffered write.
Memory is therefore flat in the number of inputs, and a crash loses only the runs in flight.

- `resume`: the inputs already answered in OUT (by their `id`: the input's `id` field, else its
  line number) are skipped and the rest appended; a last line a crash left half-written is cut
  off, and its input runs again.
- `on_bad_input`: at a line that is not a valid input, `stop` ends the run there (every finished
  record written, the error naming file:line; `resume` then goes on from that line), `skip`
  writes an error record for it and goes on.
- The first record a command writes to a file that has none with it carries the pipeline's shape
  (`pipeline`: nodes, types, edges), so that `amaos-llm report OUT` can draw the graph from OUT alone.
- An output that cannot be written (a directory, a full disk) is a `ConfigError` naming it: the
  runs stop, and every record counted as written is whole on disk.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

from amaos_llm import Budget, ConfigError
from graphs.batch import (
    BadInput,
    BatchItem,
    InputIds,
    count_inputs,
    pipeline_record,
    read_lines,
    record_id,
)
from graphs.executors import Executor, LocalExecutor
from graphs.pipeline import Pipeline
from graphs.results import RunResult


class OnBadInput(str, Enum):
    stop = "stop"
    skip = "skip"


@dataclass
class BatchSummary:
    runs: int = 0  # runs made by this command
    failed: int = 0  # of which failed
    bad: int = 0  # bad input lines written as error records (`skip`)
    resumed: int = 0  # records already in the output (`resume`)
    cost: Decimal = Decimal(0)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.bad


class RecordWriter:
    """JSONL records to a file, each in one unbuffered write: on disk, or reported as not."""

    def __init__(self, path: Path, *, resume: bool, pipeline: dict[str, Any] | None = None) -> None:
        self.path = path
        self.done = InputIds()  # the ids of the inputs the file answers already
        self.written = 0
        self._pipeline = pipeline  # still to be written with the next record
        self.on_record: Callable[[dict[str, Any]], None] | None = None
        if resume and path.is_file():  # never read a device such as /dev/full: it has no end
            self._read_done()
        try:
            # No buffer: a record is written whole when `write` returns, nothing waits in memory for a flush.
            self._file: BinaryIO | None = open(path, "ab" if resume else "wb", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"cannot write: {exc.strerror or exc}", path=str(path)) from None

    def _read_done(self) -> None:
        """The ids of the whole records in the file; a half-written last line is cut off."""
        end = 0  # where the last whole line ends
        with self.path.open("rb") as file:
            for number, raw in enumerate(file, start=1):
                if not raw.endswith(b"\n"):
                    break  # a crash stopped this write half-way: its input runs again
                end += len(raw)
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    record = None
                answered = record_id(record)
                if isinstance(record, dict) and "pipeline" in record:
                    self._pipeline = None  # the file has it already
                if answered is None:
                    raise ConfigError("not a record of this command: --resume cannot tell which input it "
                                      "answers", path=str(self.path), line=number)
                self.done.add(answered)
        if end < self.path.stat().st_size:
            os.truncate(self.path, end)

    def write(self, record: dict[str, Any]) -> None:
        assert self._file is not None
        if self._pipeline is not None:
            record = {**record, "pipeline": self._pipeline}
        data = memoryview((json.dumps(record) + "\n").encode())
        try:
            while data:  # a full disk may take part of a record: the rest fails, and --resume cuts it off
                data = data[self._file.write(data) or 0:]
        except OSError as exc:
            why = f"cannot write: {exc.strerror or exc}"
            if self.written:
                why += f"; every record before it is whole ({self.written} written): run again with --resume to go on"
            raise ConfigError(why, path=str(self.path)) from None
        self.written += 1
        self._pipeline = None
        if self.on_record is not None:
            self.on_record(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # unbuffered: nothing is left to flush, so closing cannot fail on a full disk
            self._file = None


class _StdoutWriter:
    def __init__(self, pipeline: dict[str, Any] | None = None) -> None:
        self.done = InputIds()  # stays empty: --resume needs an output file
        self.written = 0
        self._pipeline = pipeline
        self.on_record: Callable[[dict[str, Any]], None] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._pipeline is not None:
            record, self._pipeline = {**record, "pipeline": self._pipeline}, None
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        self.written += 1
        if self.on_record is not None:
            self.on_record(record)

    def close(self) -> None:
        pass


async def run_batch(
    pipeline: Pipeline,
    source: Path,
    output: Path | None,
    concurrency: int,
    *,
    resume: bool = False,
    on_bad_input: OnBadInput = OnBadInput.stop,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    executor: Executor | None = None,
    ordered: bool = True,
    ledger: Budget | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> BatchSummary:
    """Run `pipeline` on each input of `source`, writing records to `output` (None: stdout) with
    a progress bar and the running cost on stderr. `on_record` sees each record once it is written.

    `executor` runs the inputs (default: `LocalExecutor(concurrency)`, in this process); whichever
    it is, this function alone reads the inputs and writes the records, one per input, in input
    order (`ordered`) or as they finish. `ledger` (a budget all the runs share, `run --budget`)
    and `on_result` (each run's `RunResult`) need the runs in this process: the default executor."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if executor is None:
        executor = LocalExecutor(concurrency, ledger=ledger, on_result=on_result)
    elif ledger is not None or on_result is not None:
        raise ValueError("a shared budget and on_result need the runs in this process: the local executor")
    executor.check(pipeline)  # before the output is opened: a job that cannot start leaves it as it was
    orchestrator = pipeline.orchestrator
    shape = pipeline_record(pipeline.name, orchestrator.nodes.values(), orchestrator.edges)
    writer: RecordWriter | _StdoutWriter = (
        RecordWriter(output, resume=resume, pipeline=shape) if output else _StdoutWriter(shape)
    )
    if on_record is not None:
        writer.on_record = on_record
    done, summary = writer.done, BatchSummary(resumed=writer.done.count)
    # The total costs a quick pass over the file (0.1 s per million lines), nothing next to the runs,
    # and gives the bar its percentage and the time left; a pipe, which can be read once, has none.
    total = count_inputs(source)
    lines = read_lines(source)

    def todo() -> Iterator[BatchItem | BadInput]:
        for entry in lines:
            if done.count and entry.record_id in done:
                continue
            if isinstance(entry, BadInput) and on_bad_input is OnBadInput.stop:
                raise entry.error  # the executor hands out every run before this line, then raises it
            yield entry

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("cost ${task.fields[cost]:.6f}"), TextColumn("[red]{task.fields[failed]} failed"))
    try:
        with Progress(*columns, console=Console(stderr=True), transient=output is None) as progress:
            bar = progress.add_task(pipeline.name, total=total, completed=min(done.count, total or done.count),
                                    cost=0.0, failed=0)
            async with executor.records(pipeline, todo(), ordered=ordered) as finished:
                async for entry, record in finished:
                    writer.write(record)
                    if isinstance(entry, BadInput):
                        summary.bad += 1
                    else:
                        summary.runs += 1
                        summary.failed += not record["ok"]
                        summary.cost += Decimal(record["cost_usd"])
                    progress.update(bar, advance=1, cost=float(summary.cost), failed=summary.failed + summary.bad)
    except ConfigError as exc:
        if output is None or exc.line is None or exc.path != str(source):
            raise
        # Stopped at a bad line: say how to go on from there.
        raise ConfigError(f"{exc.reason}; the runs before it are in {output}: fix the line (or use "
                          "--on-bad-input skip) and run again with --resume", path=exc.path, line=exc.line,
                          field=exc.field) from None
    finally:
        lines.close()
        writer.close()
    return summary
