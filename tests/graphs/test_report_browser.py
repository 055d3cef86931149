"""The run report in a real browser: headless Chromium, networking disabled, renders the page; the
screenshot shows the graph, and the rendered DOM holds the RunResults' per-node costs exactly.

Skips when Chromium is missing, unless AMAOS_REQUIRE_BROWSER=1 (as in .ci/run): then it fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from graphs._svg import share_colour
from nodes import register_node_type
from nodes.registry import _registered
from tests.graphs.report_pipeline import RoutedFakeNode, expected_costs, run_with_report
from tests.support.png import png_pixels

# No network at all: every proxied request goes to a closed port, and no name resolves.
OFFLINE = ["--headless", "--disable-gpu", "--no-sandbox", "--proxy-server=127.0.0.1:9",
           '--host-resolver-rules=MAP * ~NOTFOUND', "--hide-scrollbars", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("AMAOS_REQUIRE_BROWSER") == "1":
            pytest.fail("AMAOS_REQUIRE_BROWSER=1 and no chromium on PATH: run scripts/install as root")
        pytest.skip("chromium is not installed (scripts/install installs it with apt when run as root)")
    return found


@pytest.fixture(autouse=True)
def routed_type():
    register_node_type(RoutedFakeNode)
    yield
    _registered.clear()


def browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([chromium, *OFFLINE, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=120, check=True)


def test_chromium_renders_the_graph_and_the_exact_node_costs_offline(chromium, tmp_path):
    pipeline, _, html = run_with_report(tmp_path)
    url = html.resolve().as_uri()
    dom = browse(chromium, tmp_path / "profile", "--dump-dom", url).stdout.decode()
    by_node, total = anyio.run(expected_costs, pipeline)
    shown = {n: Decimal(c) for n, c in re.findall(r'<td class="num cost" data-node="([^"]+)">\$([0-9.]+)', dom)}
    assert shown == by_node
    assert f"total cost ${total:f}" in dom

    shot = tmp_path / "shot.png"
    browse(chromium, tmp_path / "profile", "--window-size=900,700", f"--screenshot={shot}", url)
    width, height, colours = png_pixels(shot.read_bytes())
    assert (width, height) == (900, 700)
    assert len(colours) > 20  # not a blank page
    # The most expensive node's box, in the colour the page gave it, covers most of its 210×84 area.
    fill = re.search(r'data-node="draft"><rect [^>]*fill="#([0-9a-f]{6})"', html.read_text())
    assert fill is not None
    assert f"#{fill[1]}" == share_colour(float(by_node["draft"] / total))  # its share of the cost: 94.5%
    rgb = tuple(int(fill[1][i:i + 2], 16) for i in (0, 2, 4))
    assert colours[rgb] > 210 * 84 // 2
