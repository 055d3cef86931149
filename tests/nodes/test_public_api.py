import subprocess
import sys

import nodes


def test_public_names():
    assert sorted(nodes.__all__) == [
        "Condition",
        "ENTRY_POINT_GROUP",
        "FunctionNode",
        "InputNode",
        "JoinNode",
        "LLMManagerNode",
        "Node",
        "NodeConfig",
        "NodeStats",
        "OutputNode",
        "Payload",
        "Predicate",
        "PromptTemplateNode",
        "ResultMessage",
        "RouterNode",
        "TaskMessage",
        "known_node_types",
        "node_class",
        "register_node_type",
    ]
    for name in nodes.__all__:
        assert getattr(nodes, name) is not None


def test_nodes_does_not_import_graphs():
    code = "import sys, nodes; sys.exit('graphs' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
