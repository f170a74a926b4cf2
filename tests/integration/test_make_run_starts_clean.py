"""`make run` (tools/host.sh run) starts ComfyUI with the pack, and nothing in its log is a traceback.

Runs the README's command itself on the ComfyUI under test (its own python, no install), reads what a user
sees in the terminal, and stops it. Before torchaudio was installed beside torch, ComfyUI 0.3.75 printed the
audio nodes' import tracebacks here, and 0.33.0 did not start at all.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from harness.comfy_server import REPO, comfy_dir, free_port


def test_make_run_starts_comfyui_with_the_pack_and_no_traceback(tmp_path):
    port = free_port()
    log_path = tmp_path / "make-run.log"
    env = {**os.environ, "HOSTS": str(comfy_dir()), "PYTHON": sys.executable, "PORT": str(port),
           "LIKENESS_HOST_HOME": str(tmp_path / "host"), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["bash", str(REPO / "tools" / "host.sh"), "run"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        answered = wait_for_pack(proc, f"http://127.0.0.1:{port}", timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert answered, f"ComfyUI did not answer with the pack's nodes:\n{text[-4000:]}"
    assert f"open http://127.0.0.1:{port}/ in your browser" in text
    assert "Traceback" not in text, text[text.index("Traceback"):][:4000]
    assert "IMPORT FAILED" not in text and "Likeness needs ComfyUI" not in text
    loaded = [line for line in text.splitlines() if line.strip().endswith("comfyui-likeness")]
    assert loaded and "seconds:" in loaded[-1], "the pack is in ComfyUI's import times"


def wait_for_pack(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """Polls the server we started until it lists a Likeness node (readiness, not a result)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/object_info/LikenessDatasetLoader", timeout=2) as r:
                if r.status == 200 and b"LikenessDatasetLoader" in r.read():
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    return False
