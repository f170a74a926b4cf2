"""Starts and stops a real ComfyUI server (main.py --cpu) with the pack linked into custom_nodes/."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_LINK_NAME = "comfyui-likeness"
TEST_PACK = REPO / "tests" / "comfy_test_pack"   # test-only nodes (tiny FLUX, conditioning), if present


def comfy_dir() -> Path:
    path = Path(os.environ.get("LIKENESS_COMFYUI_DIR") or REPO / ".host" / "ComfyUI")
    if not (path / "main.py").exists():
        raise RuntimeError(f"No ComfyUI at {path}: run the tests through `make test` (it installs the host)")
    return path


def pack_dir(base_dir: Path) -> Path:
    """The pack's data folder in a base directory: ComfyUI's system-user folder for it (nodes/host.py)."""
    return Path(base_dir) / "user" / "__likeness"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI process over a base directory; `restart()` keeps the directory (models, user data)."""

    def __init__(self, base_dir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 args: list[str] | None = None):
        self.base_dir = Path(base_dir)
        self.env = dict(env or {})
        self.args = list(args or [])          # more ComfyUI flags, e.g. ["--multi-user"]
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base_dir / "server.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pack_dir(self) -> Path:
        """The pack's private data folder under this server's user directory (ledgers, journal, key files)."""
        return pack_dir(self.base_dir)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def prepare(self) -> None:
        nodes_dir = self.base_dir / "custom_nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "user").mkdir(exist_ok=True)
        links = {PACK_LINK_NAME: REPO}
        if TEST_PACK.exists():
            links["likeness_test_pack"] = TEST_PACK
        for name, target in links.items():
            link = nodes_dir / name
            if not link.is_symlink():
                link.symlink_to(target, target_is_directory=True)

    def start(self, timeout: float = 180) -> ComfyServer:
        self.prepare()
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base_dir),
               "--database-url", f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}", *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "a", encoding="utf-8")
        log.write(f"\n===== start {self.starts + 1}: {' '.join(cmd)}\n")
        log.flush()
        self.proc = subprocess.Popen(cmd, cwd=comfy_dir(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.starts += 1
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/object_info/KSampler", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)  # polling a process we started: readiness, not synchronisation of a result
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, kill: bool = False) -> None:
        """Stops the process by its PID and waits until it is gone (so the port can be reused)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def restart(self, kill: bool = False) -> ComfyServer:
        self.stop(kill=kill)
        return self.start()

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
