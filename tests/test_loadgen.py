"""The benchmark load generator against the real `qtchat serve`: every delivery arrives.

Runs `benchmarks/loadgen.py --quick --reference` as a subprocess (it starts its own
servers on 127.0.0.1, port 0: qtchat's, and the plain asyncio yardstick in
`benchmarks/reference_server.py` after each of its runs) and checks counts only: N clients ×
M messages deliveries in the fan-out runs, every copy in the one-at-a-time run, every
client registered in the storm and memory runs, no error frames, and servers that exit 0
on SIGTERM. No timing is asserted: this machine's speed is the benchmark's business, not
the test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LOADGEN = REPO / "benchmarks" / "loadgen.py"

pytestmark = pytest.mark.skipif(
    not (REPO / "qtchat" / "server" / "chat_server.py").exists()
    or not (REPO / "qtchat" / "cli.py").exists(),
    reason="qtchat/server/chat_server.py or qtchat/cli.py is missing: no `qtchat serve` yet",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("loadgen") / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(LOADGEN), "--quick", "--reference", "--json", str(out)],
        capture_output=True, text=True, timeout=150, cwd=out.parent, check=False)
    report = proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]
    assert out.exists(), f"loadgen wrote no results (exit {proc.returncode}):\n{report}"
    data = json.loads(out.read_text())
    data["returncode"] = proc.returncode
    return data, report


def _runs(data: dict[str, Any], workload: str, label: str = "") -> list[dict[str, Any]]:
    runs = [r for r in data["results"]
            if r["workload"] == workload and r.get("server_label", "") == label]
    assert runs, f"no {workload} run{' against ' + label if label else ''} in the quick plan"
    return runs


def test_fanout_delivers_every_message_to_every_client(quick_run):
    data, report = quick_run
    for run in _runs(data, "fanout"):
        assert "error" not in run, report
        assert run["messages"] > 0
        assert run["deliveries"] == run["expected"] == run["n"] * run["messages"], run
        assert run["clients_with_wrong_count"] == 0, run
        assert run["anomalies"] == {}, run
        assert run["samples"] > 0, "the probes saw no latency stamps"


def test_one_at_a_time_every_copy_arrives(quick_run):
    data, report = quick_run
    for run in _runs(data, "latency"):
        assert "error" not in run, report
        assert run["deliveries"] == run["expected"] == run["n"] * run["messages"], run
        assert run["anomalies"] == {}, run


def test_storm_and_idle_clients_all_register(quick_run):
    data, report = quick_run
    for run in _runs(data, "storm"):
        assert run["registered"] == run["n"], report
        assert run["failures"] == {}, run
    for run in _runs(data, "memory"):
        assert run["failures"] == {}, report
        assert set(run["rss_kb"]) == {str(n) for n in run["steps"]}, run


def test_server_behaved_and_loadgen_exited_zero(quick_run):
    data, report = quick_run
    assert data["server_problems"] == [], report
    assert all(r["ok"] for r in data["results"]), report
    assert data["returncode"] == 0, report


def test_the_reference_server_is_measured_the_same_way(quick_run):
    """The yardstick the ratios are taken against delivers everything too, run for run."""
    data, report = quick_run
    for workload in ("fanout", "latency", "storm"):
        ours, theirs = _runs(data, workload), _runs(data, workload, "reference")
        assert [(r["n"], r["rep"]) for r in ours] == [(r["n"], r["rep"]) for r in theirs]
        for run in theirs:
            assert run["ok"], report
            if "expected" in run:
                assert run["deliveries"] == run["expected"], run
    assert not [r for r in data["results"] if r.get("server_label") and
                r["workload"] not in ("fanout", "latency", "storm")], "memory has no reference run"
    assert data["reference_problems"] == [], report

