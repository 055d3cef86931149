import subprocess
import sys

import graphs


def test_public_names():
    assert sorted(graphs.__all__) == [
        "Edge",
        "Event",
        "EventBus",
        "GraphError",
        "GraphOrchestrator",
        "Listener",
        "Pipeline",
        "PipelineSpec",
        "RunFailed",
        "RunResult",
        "TopologyError",
        "dump_pipeline",
        "load_pipeline",
    ]
    for name in graphs.__all__:
        assert getattr(graphs, name) is not None


def test_importing_graphs_does_not_load_the_cli_stack():
    code = "import sys, graphs; sys.exit(bool({'typer', 'rich'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
