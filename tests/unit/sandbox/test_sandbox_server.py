"""The server as a whole: concurrent clients, throughput, quiet logs, start/stop, `python -m sandbox`."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sandbox import SandboxConfig, SandboxServer, start_in_thread
from tests.unit.sandbox.helpers import BEARER, stats

ROOT = Path(__file__).resolve().parents[3]


def test_concurrent_clients_at_hundreds_of_requests_per_second(
    sandbox_server: SandboxServer, client: httpx.Client
) -> None:
    def work(worker: int) -> int:
        done = 0
        with httpx.Client(base_url=sandbox_server.base_url, timeout=10) as http:
            for i in range(25):
                body = {"model": "m", "prompt": f"{worker}-{i}"}
                job = http.post("/sandbox/v1/jobs", json=body, headers=BEARER)
                poll = http.get(f"/sandbox/v1/jobs/{job.json()['id']}", headers=BEARER)
                done += job.status_code == 200 and poll.json()["status"] == "succeeded"
        return done

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        finished = sum(pool.map(work, range(16)))
    elapsed = time.monotonic() - start
    assert finished == 400
    assert 800 / elapsed > 200, f"{800 / elapsed:.0f} requests/s"
    counters = stats(client)
    assert counters["submits"]["sandbox"] == 400 and counters["duplicate_submits"] == 0


def test_nothing_is_logged_per_request(client: httpx.Client, capfd: pytest.CaptureFixture[str]) -> None:
    client.get("/_control/health")
    client.get("/nowhere")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_start_in_thread_on_a_free_port_and_stop() -> None:
    server = start_in_thread(SandboxConfig(port=0, host="0.0.0.0"))
    assert server.base_url == f"http://127.0.0.1:{server.port}" and server.port != 0
    assert httpx.get(f"{server.base_url}/_control/health").json() == {"ok": True}
    server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/_control/health", timeout=1)


def test_python_m_sandbox_prints_its_address_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--delay", "0", "--fault", "submit:503:count=1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        base_url = line.removeprefix("sandbox listening on ")
        first = httpx.post(f"{base_url}/sandbox/v1/jobs", json={"model": "m", "prompt": "x"}, headers=BEARER)
        assert first.status_code == 503
        second = httpx.post(f"{base_url}/sandbox/v1/jobs", json={"model": "m", "prompt": "x"}, headers=BEARER)
        assert second.status_code == 200
    finally:
        process.terminate()
        process.wait(5)


def test_python_m_sandbox_refuses_a_bad_fault() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--fault", "submit:often"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2 and "status must be" in result.stderr
