"""Two replicas behind HAProxy: one leaves mid-load and comes back; nothing is lost.

scripts/haproxy_replicas.py starts two daemons and HAProxy (deploy/haproxy/) on loopback,
runs OpenAI SDK streaming clients and Wyoming clients (one connection per request, as Home
Assistant does) through it, sends SIGTERM to replica r1 while streams are in flight on it,
then starts r1 again. This test asserts what the run must show: streams in flight on r1
finish whole (the drain), every request started after the signal succeeds on r2, HAProxy
marks r1 down, the restarted r1 serves again, and no request fails. The figures (requests,
retries, time to mark down, drain) are printed, not asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_report(kokoro_assets) -> dict:  # the assets are fetched first
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "haproxy_replicas.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    print(result.stderr[-3000:])
    start = result.stdout.find("{")
    assert start >= 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout[start:])
    print(json.dumps({k: v for k, v in report.items() if k != "haproxy"}, indent=2))
    return report


def test_no_request_is_lost(run_report):
    assert run_report["failed"] == 0, run_report["failures"]
    assert run_report["by_kind"]["http"] > 0 and run_report["by_kind"]["wyoming"] > 0


def test_streams_in_flight_on_the_leaving_replica_finish_whole(run_report):
    assert run_report["in_flight_on_victim_at_signal"] >= 1
    assert run_report["drained_complete"]
    assert run_report["exit_code"] == 0


def test_requests_after_the_signal_go_to_the_other_replica(run_report):
    assert run_report["started_after_signal"] >= 1
    assert run_report["after_signal_all_ok_elsewhere"]
    assert run_report["mark_down_s"] > 0  # HAProxy saw r1 go DOWN (the time is reported)


def test_the_restarted_replica_comes_back_into_rotation(run_report):
    assert run_report["victim_back_in_rotation"]
    assert run_report["haproxy"]["openai/r1"]["status"] == "UP"
    assert run_report["haproxy"]["wyoming/r1"]["status"] == "UP"
