"""The benchmark suite: amaos-llm measured side by side with LiteLLM and LangGraph.

`python -m bench [--quick]`; see `bench/README.md`. Each module here is one benchmark, run as a
child process of `bench/.venv`'s python that prints JSON; `bench.__main__` runs them in turn and
`bench.report` writes the tables.
"""
