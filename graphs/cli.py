"""`amaos-llm`: run pipelines, make one call, list models, check and draw files.

    amaos-llm run config/pipelines/offline_agent.yaml --input "What is a circuit breaker?"
    amaos-llm run config/pipelines/summarize.yaml --inputs tasks.jsonl --concurrency 16 --output out.jsonl
    amaos-llm run config/pipelines/summarize.yaml --inputs tasks.jsonl --output out.jsonl --resume
    amaos-llm complete "Say hello" --local-only
    amaos-llm models
    amaos-llm validate config/pipelines/triage.yaml --inputs tasks.jsonl
    amaos-llm graph config/pipelines/triage.yaml
    amaos-llm run config/pipelines/summarize.yaml --inputs tasks.jsonl --output out.jsonl --report report.html
    amaos-llm run config/pipelines/summarize.yaml --inputs tasks.jsonl --output out.jsonl --budget 0.50
    amaos-llm report out.jsonl -o report.html

Results go to stdout; errors and progress to stderr, each error once, in one line (add `--debug`
for the traceback). Exit codes: 0 success, 1 a run or call failed, 2 a bad file, option or
configuration, 130 interrupted (Ctrl-C: the work stops at once; finished results are kept).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from amaos_llm import (
    AllModelsFailed,
    Budget,
    LLMConfig,
    LLMError,
    LLMManager,
    LLMResult,
    ModelNotFound,
    ProviderError,
    StreamInterrupted,
)
from graphs.batch import check_inputs, llm_calls, pipeline_record, run_record
from graphs.batch_run import BatchSummary, OnBadInput, run_batch
from graphs.costs import CostTally, budget_line
from graphs.errors import GraphError, RunFailed
from graphs.model_check import check_models
from graphs.pipeline import Pipeline, load_pipeline
from graphs.report import RunReport, read_report, write_report
from graphs.results import RunResult
from graphs.terminal import StreamPrinter, drain
from nodes import Payload

app = typer.Typer(
    name="amaos-llm",
    help="Local-first LLM manager and graph runner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LocalOnly = Annotated[bool, typer.Option("--local-only", help="Use local models only (no cloud calls).")]
ConfigPath = Annotated[
    Path | None, typer.Option("--config", "-c", help="A model_priority.yaml to use instead of the default.")
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
Otel = Annotated[bool, typer.Option(
    "--otel", help="Export spans and metrics over OTLP/HTTP, set up from the OTEL_* environment variables "
                   "(needs the otel extra: pip install amaos-llm\\[otel]).")]


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogLevelOption = Annotated[LogLevel | None, typer.Option(
    "--log-level", case_sensitive=False, help="Log the library's `amaos_llm` and `graphs` loggers at this level "
                                              "to stderr.")]


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"


T = TypeVar("T")


@contextmanager
def _errors_as_one_line(debug: bool) -> Iterator[None]:
    """The library's own errors (and unreadable files) become one line on stderr, exit code 2."""
    try:
        yield
    except (LLMError, GraphError, OSError, ValueError) as exc:
        if debug:
            raise
        _say_error(exc)
        raise typer.Exit(2) from None


def _run_interruptible(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`anyio.run(fn, *args)` where Ctrl-C stops the work cleanly instead of killing it mid-way.

    The first SIGINT cancels the work (an embedded generation stops at its next token, files are
    closed with every finished result in them) and the command exits with code 130 and one line
    on stderr; any later SIGINT is ignored, so a second Ctrl-C cannot break the clean-up."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with Ctrl-C ignored (nohup, `cmd &`): keep it so
        return anyio.run(fn, *args)
    interrupted = False

    async def main() -> Any:
        nonlocal interrupted
        result = error = None
        # The receiver stays open until the clean-up is over: later signals queue there, unheard.
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    nonlocal interrupted
                    async for _ in signals:
                        interrupted = True
                        tg.cancel_scope.cancel()
                        return

                tg.start_soon(watch)
                try:
                    result = await fn(*args)
                except Exception as exc:  # raised below as itself, not wrapped in the task group's group
                    error = exc
                tg.cancel_scope.cancel()
        if interrupted:  # ignored from here, not only after anyio.run: its teardown and the interpreter's
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # exit still join threads a second Ctrl-C would break
        if error is not None:
            raise error
        return result

    try:
        result = anyio.run(main)
    except KeyboardInterrupt:  # a SIGINT that came before or after the receiver was listening
        interrupted = True
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        typer.secho("interrupted", fg="yellow", err=True)
        raise typer.Exit(130)
    return result  # type: ignore[no-any-return]


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="The pipeline YAML file.")],
    input: Annotated[str | None, typer.Option("--input", "-i", help="One input, fed to the root nodes.")] = None,
    inputs: Annotated[Path | None, typer.Option(help="A JSONL file of inputs, one per line.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSONL records here.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs at a time with --inputs.")] = 16,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Skip the inputs whose ids (`id` field, else line number) are in --output; "
        "append the rest.")] = False,
    on_bad_input: Annotated[OnBadInput, typer.Option(
        "--on-bad-input", help="At a line that is not a valid input: stop there, or write an error record "
                               "for it and go on.")] = OnBadInput.stop,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write an HTML report of the runs (with --output: of every record in it).")] = None,
    ordered: Annotated[bool, typer.Option(
        "--ordered/--no-ordered", help="With --inputs: records in input order, or as the runs finish.")] = True,
    executor: Annotated[ExecutorKind, typer.Option(
        "--executor", help="With --inputs: run in this process, or on Ray (the ray extra).")] = ExecutorKind.local,
    address: Annotated[str | None, typer.Option(
        "--address", help="--executor ray: join this Ray cluster (default: start a local Ray on 127.0.0.1).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="--executor ray: worker actors, each holding one copy of the pipeline [default: 1].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="--executor ray: inputs sent to a worker at a time [default: 64].")] = None,
    budget: Annotated[float | None, typer.Option(
        "--budget", min=0, help="Cap the whole command's spend in USD (all runs of --inputs together); ends with "
                                "cost tables by node and by model.")] = None,
    local_only: LocalOnly = False,
    config: ConfigPath = None,
    otel: Otel = False,
    log_level: LogLevelOption = None,
    debug: Debug = False,
) -> None:
    """Run a pipeline on one input (--input) or on each line of a JSONL file (--inputs).

    With --executor ray, --concurrency is the runs at a time in each worker."""
    if (input is None) == (inputs is None):
        raise typer.BadParameter("give exactly one of --input TEXT or --inputs FILE.jsonl")
    if resume and (inputs is None or output is None):
        raise typer.BadParameter("--resume needs --inputs FILE.jsonl and the --output FILE it appends to")
    if executor is ExecutorKind.ray and inputs is None:
        raise typer.BadParameter("--executor ray runs --inputs FILE.jsonl")
    ray_only = [name for name, value in (("--address", address), ("--workers", workers),
                                         ("--batch-size", batch_size)) if value is not None]
    if ray_only and executor is not ExecutorKind.ray:
        raise typer.BadParameter(f"{ray_only[0]} is an option of --executor ray")
    if budget is not None and executor is ExecutorKind.ray:
        # The command's ledger lives in this process; Ray workers would each spend it in full.
        raise typer.BadParameter("--budget needs the runs in this process: --executor local")
    _configure_logging(log_level)
    with _errors_as_one_line(debug), _telemetry(otel):
        loaded = load_pipeline(pipeline, local_only=True if local_only else None, config_path=config)
        # Without --output the records exist only on stdout: the report takes them as they go by.
        # With it, the report is read back from the file, so it is the page `amaos-llm report` makes.
        seen = RunReport() if report is not None and output is None else None
        on_record = seen.add if seen is not None else None
        ledger = None if budget is None else Budget(budget, scope="run")
        tally = CostTally() if ledger is not None else None
        if input is not None:
            ok = _run_interruptible(_run_one, loaded, input, output, on_record, ledger, tally)
        elif inputs is not None:
            runner = None
            if executor is ExecutorKind.ray:
                from graphs.executors import RayExecutor

                runner = RayExecutor(address=address, workers=workers or 1, batch_size=batch_size or 64,
                                     concurrency=concurrency, local_only=True if local_only else None,
                                     config_path=str(config.resolve()) if config is not None else None)
            summary = _run_interruptible(
                partial(run_batch, resume=resume, on_bad_input=on_bad_input, on_record=on_record, executor=runner,
                        ordered=ordered, ledger=ledger, on_result=None if tally is None else tally.add),
                loaded, inputs, output, concurrency,
            )
            _show_summary(summary, output)
            ok = summary.ok
        if ledger is not None and tally is not None:
            _show_costs(Console(stderr=inputs is not None), tally, ledger)
        if report is not None:
            if seen is None:
                assert output is not None  # `seen` is made exactly when there is no output file
                seen = read_report(output)
            write_report(seen, report)
            typer.secho(f"report: {report}", fg="green", err=True)
    if not ok:
        raise typer.Exit(1)


async def _run_one(
    pipeline: Pipeline, text: str, output: Path | None, on_record: Callable[[dict[str, Any]], None] | None = None,
    ledger: Budget | None = None, tally: CostTally | None = None,
) -> bool:
    async with pipeline:
        try:
            result = await pipeline.run(text, budget_usd=ledger)
        except RunFailed as exc:  # a fail_fast pipeline: show what finished
            result = exc.result
    if tally is not None:
        tally.add(result)
    _show_run(Console(), result)
    if output is not None or on_record is not None:
        o = pipeline.orchestrator
        record = run_record(result, Payload(prompt=text))
        record["pipeline"] = pipeline_record(pipeline.name, o.nodes.values(), o.edges)
        if output is not None:
            output.write_text(json.dumps(record) + "\n", encoding="utf-8")
        if on_record is not None:
            on_record(record)
    return result.ok


@app.command("report")
def report_command(
    records: Annotated[Path, typer.Argument(help="The JSONL file `amaos-llm run --output` wrote.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    debug: Debug = False,
) -> None:
    """Write an HTML report (graph, per-node and per-model tables, latency, cost) of a run's records."""
    with _errors_as_one_line(debug):
        built = read_report(records)
        write_report(built, out)
    typer.secho(f"report: {out} ({built.runs} runs)", fg="green", err=True)


def _show_summary(summary: BatchSummary, output: Path | None) -> None:
    parts = [f"{summary.runs} runs", f"{summary.failed} failed"]
    if summary.bad:
        parts.append(f"{summary.bad} bad input line{'s' if summary.bad > 1 else ''}")
    if summary.resumed:
        parts.append(f"{summary.resumed} already in {output}")
    parts.append(_tokens_cost(None, summary.cost))
    Console(stderr=True).print(Text(", ".join(parts), style="green" if summary.ok else "red"))


def _show_costs(console: Console, tally: CostTally, ledger: Budget) -> None:
    """`--budget`: the cost tables, then what the cap has left."""
    for table in tally.tables():
        console.print(table)
    console.print(Text(budget_line(ledger)))


def _show_run(console: Console, result: RunResult) -> None:
    """The answers and the LLM calls on stdout; each failed node once, on stderr."""
    for node_id, out in result.outputs.items():
        if not out.ok:
            continue
        if len(result.outputs) > 1:
            console.print(Text(f"[{node_id}]", style="bold"))
        console.print(Text(out.content), soft_wrap=True)
    calls = llm_calls(result)
    if calls:
        table = Table(box=None, header_style="dim", pad_edge=False)
        for column in ("node", "model", "provider", "tokens in/out", "cost", "latency"):
            table.add_column(column, justify="right" if column in ("cost", "latency") else "left")
        for node_id, r in calls.items():
            table.add_row(node_id, r.model_name or "-", r.provider or "-",
                          f"{r.usage.input_tokens}/{r.usage.output_tokens}", _money(r.cost), f"{r.latency:.2f}s")
        console.print(table)
    console.print(Text(f"total: {_tokens_cost(result.total_tokens, result.total_cost)}, "
                       f"{result.wall_time:.2f}s", style="dim"))
    for node_id, error in result.errors.items():
        _say_error(f"{node_id} failed: {error}")


@app.command()
def complete(
    prompt: Annotated[str, typer.Argument(help="The prompt.")],
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Use this model (no fallback).")] = None,
    local_only: LocalOnly = False,
    config: ConfigPath = None,
    stream: Annotated[bool, typer.Option("--stream", help="Write the answer as it arrives.")] = False,
    mid_stream: Annotated[str | None, typer.Option(
        "--mid-stream", help="With --stream, a failure after the first chunk: fail, restart or continue.")] = None,
    otel: Otel = False,
    log_level: LogLevelOption = None,
    debug: Debug = False,
) -> None:
    """One call through the manager; prints the answer, then model, tokens and cost."""
    _configure_logging(log_level)

    async def call() -> LLMResult:
        async with _manager(config, local_only) as manager:
            if stream:
                return await drain(manager.stream(
                    prompt, system_prompt=system, temperature=temperature, max_tokens=max_tokens, force_model=model,
                    mid_stream=mid_stream, callbacks=[StreamPrinter()]))
            return await manager.complete(
                prompt, system_prompt=system, temperature=temperature, max_tokens=max_tokens, force_model=model
            )

    with _errors_as_one_line(debug), _telemetry(otel):
        try:
            result = _run_interruptible(call)
        except (AllModelsFailed, ModelNotFound, ProviderError, StreamInterrupted) as exc:  # the call failed
            if debug:
                raise
            if stream:
                sys.stdout.write("\n")  # the partial text stays; the error goes below it
            _say_error(exc)
            raise typer.Exit(1) from None
    console = Console()
    if not stream:
        console.print(Text(result.content), soft_wrap=True)
    console.print(Text(f"{result.model_name} ({result.provider}) · {_tokens_cost(result.tokens, result.cost)} "
                       f"· {result.latency:.2f}s", style="dim"))


@app.command()
def models(
    check: Annotated[bool, typer.Option("--check/--no-check", help="Ask each provider if it is reachable.")] = True,
    local_only: LocalOnly = False,
    config: ConfigPath = None,
    debug: Debug = False,
) -> None:
    """The configured models: source, provider, priority, price, key, reachability."""
    with _errors_as_one_line(debug):
        cfg = LLMConfig.from_yaml(config) if config is not None else LLMConfig.default()
        specs = [m for m in cfg.models if m.enabled]
        reachable = _run_interruptible(check_models, specs, local_only) if check else {}
    from amaos_llm.pricing import PriceBook

    prices = PriceBook()
    table = Table(title="models")
    for column in ("name", "source", "provider", "priority", "$/1k in/out", "key", "reachable"):
        table.add_column(column, no_wrap=column == "name")
    for spec in specs:
        p = prices.price(spec)
        price = "unknown" if p is None else f"{p.per_1k_input.normalize():f}/{p.per_1k_output.normalize():f}"
        key = "n/a" if not spec.key_required else "yes" if spec.resolve_key() else "missing"
        table.add_row(spec.name, spec.source or "-", spec.provider, str(spec.priority), price, key,
                      reachable.get(spec.name, "-"))
    Console().print(table)


@app.command()
def validate(
    file: Annotated[Path | None, typer.Argument(help="A pipeline or a model_priority.yaml.")] = None,
    inputs: Annotated[Path | None, typer.Option(help="A JSONL file of inputs to check, every line.")] = None,
    local_only: Annotated[
        bool, typer.Option("--local-only", help="Also check that a local model exists to run offline.")
    ] = False,
    live: Annotated[bool, typer.Option(
        "--live", help="Also ask each model's endpoint (health checks, no generation): credentials, prices, windows."
    )] = False,
    debug: Debug = False,
) -> None:
    """Check a pipeline or a model configuration file (prints `ok` or the first problem), and/or
    a JSONL inputs file (prints every bad line). With --live, a table per model; exit 1 when a
    model that would be routed to is unusable.

    Beyond the schema: a key written twice, nothing to route to, a missing model file, a
    `force_model` no model answers to. An API key written in a file is a warning. In an inputs
    file, an `id` given twice is a warning (`run --resume` knows inputs by id)."""
    if file is None and inputs is None and not live:
        raise typer.BadParameter("give a pipeline or model configuration FILE, --inputs FILE.jsonl, or both")
    with _errors_as_one_line(debug):
        if file is not None:
            warnings, message = _check_config_file(file, local_only)
            for warning in warnings:
                typer.secho(f"warning: {warning}", fg="yellow", err=True)
            Console().print(Text(message, style="green"))
        if inputs is not None:
            _check_inputs_file(inputs)
        if live and not _live_report(file, local_only):
            raise typer.Exit(1)


def _live_report(file: Path | None, local_only: bool) -> bool:
    """`validate --live`: the manager's configuration report as a table; whether it is ok."""

    from amaos_llm.yaml_source import load_yaml

    if file is not None:  # a pipeline's models come from its nodes' configuration: the default one here
        data = load_yaml(file).data
        file = None if isinstance(data, dict) and "nodes" in data else file

    async def report() -> Any:
        async with _manager(file, local_only) as manager:
            return await manager.validate_configuration()

    result = _run_interruptible(report)
    table = Table(title="models (live)")
    for column in ("name", "credentials", "reachable", "price", "context window", "problems"):
        table.add_column(column)
    for name, check in result.models.items():
        reachable = "-" if check.reachable is None else "yes" if check.reachable else "no"
        table.add_row(name, "yes" if check.credentials else "missing", reachable, check.price_source,
                      str(check.context_window or "-"), "; ".join(check.problems) or "ok")
    Console().print(table)
    return bool(result.ok)


def _check_config_file(file: Path, local_only: bool) -> tuple[list[str], str]:
    from amaos_llm.yaml_source import load_yaml
    from graphs.config_check import check_model_config, check_pipeline_models, require_local

    doc = load_yaml(file)
    if isinstance(doc.data, dict) and "nodes" in doc.data:
        pipeline = load_pipeline(file, local_only=True if local_only else None)
        warnings = check_pipeline_models(doc, pipeline, local_only=local_only)
        o = pipeline.orchestrator
        return warnings, f"ok: pipeline {pipeline.name!r}: {len(o.nodes)} nodes, {len(o.edges)} edges"
    check = check_model_config(file)
    if local_only or check.config.routing.local_only:
        require_local(check)
    return check.warnings, f"ok: model configuration: {len(check.config.models)} models"


def _check_inputs_file(path: Path) -> None:
    """Every bad line of an inputs file, one line each on stderr (the first 20, then a count)."""
    check = check_inputs(path)
    for warning in check.duplicates:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    if check.duplicate_count > len(check.duplicates):
        typer.secho(f"warning: ... and {check.duplicate_count - len(check.duplicates)} more ids given twice",
                    fg="yellow", err=True)
    for error in check.bad:
        _say_error(error)
    if check.bad_count:
        more = check.bad_count - len(check.bad)
        _say_error(f"{path}: {check.bad_count} bad line{'s' if check.bad_count > 1 else ''}"
                   + (f" ({more} more not shown)" if more else "") + f", {check.inputs} good")
        raise typer.Exit(2)
    Console().print(Text(f"ok: inputs: {check.inputs} line{'' if check.inputs == 1 else 's'}", style="green"))


@app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="A pipeline YAML file.")],
    debug: Debug = False,
) -> None:
    """Print the pipeline as a Mermaid flowchart."""
    with _errors_as_one_line(debug):
        text = load_pipeline(file).to_mermaid()
    typer.echo(text, nl=False)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"amaos-llm {version('amaos-llm')}")  # the installed package's, not a copy in the code
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options of the command itself, before any subcommand (`--version`)."""


@contextmanager
def _telemetry(wanted: bool) -> Iterator[None]:
    """With `--otel`, the SDK exporting over OTLP/HTTP while the command runs (set up before any
    manager or pipeline is built: they decide when built whether to record), flushed at the end."""
    if not wanted:
        yield
        return
    from graphs.otel import OtelUnavailable, configure_from_env

    try:
        setup = configure_from_env()
    except OtelUnavailable as exc:
        _say_error(exc)
        raise typer.Exit(2) from None
    try:
        yield
    finally:
        setup.shutdown()


def _configure_logging(level: LogLevel | None) -> None:
    """`--log-level`: the library's loggers to stderr at that level (without it, nothing: the
    command's own lines say what failed, and a fallback's warning per call would flood a batch)."""
    if level is None:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("amaos_llm", "graphs"):
        logger = logging.getLogger(name)
        logger.setLevel(level.value.upper())
        logger.handlers = [handler]  # replaced, not added: one line per record however often this runs
        logger.propagate = False


def _say_error(problem: BaseException | str) -> None:
    # typer.secho, not rich: one line, never re-wrapped to the terminal width.
    typer.secho(f"error: {problem}", fg="red", err=True)


def _manager(config: Path | None, local_only: bool) -> LLMManager:
    flag = True if local_only else None
    return LLMManager.from_yaml(config, local_only=flag) if config is not None else LLMManager(local_only=flag)


def _money(cost: Decimal | None) -> str:
    return "unpriced" if cost is None else f"${cost:.6f}"


def _tokens_cost(tokens: int | None, cost: Decimal | None) -> str:
    parts: list[Any] = []
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    parts.append(_money(cost))
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    """The `amaos-llm` entry point."""
    app(args=argv)


if __name__ == "__main__":
    main()
