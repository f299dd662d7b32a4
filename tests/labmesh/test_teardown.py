"""`python -m lab.mesh up` as the demo runs it: Ctrl-C stops every process it started and leaves no shared memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_it_leaves_no_process_or_shared_memory_behind(tmp_path: Path) -> None:
    state = tmp_path / "lab"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.mesh", "up", "--state-dir", str(state), "--rate-scale", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "lab.json").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the lab did not come up within 60 s"
            time.sleep(0.2)
        status = json.loads((state / "lab.json").read_text())
        pids = status["pids"]
        # six sidecars, and the ingress controller's Envoy (outside the mesh)
        assert len([n for n in pids if n.startswith("envoy:")]) == 7 and "prometheus" in pids
        assert "envoy:ingress ingress-nginx-controller" in pids
        assert all(alive(pid) for pid in pids.values())
        envoys = [*status["sidecars"].values(), *status["ingress"].values()]
        shm = [Path(f"/dev/shm/envoy_shared_memory_{s['base_id'] * 10}") for s in envoys]
        assert len({s["base_id"] for s in envoys}) == 7, "one --base-id per Envoy"
        assert any(p.exists() for p in shm)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "lab mesh stopped" in out
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not [p for p in shm if p.exists()]
    assert not (state / "lab.json").exists()
