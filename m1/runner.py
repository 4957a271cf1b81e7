"""``m1 up``: migrate, then run every service as its own process until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shared import topology
from shared.db import migrate
from shared.settings import SERVICE_PORTS, Settings

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


async def migrate_all(settings: Settings) -> dict[str, list[str]]:
    """Apply every service's migrations to its own schema and declare the broker topology."""
    applied = {}
    for name in topology.SERVICES:
        applied[name] = await migrate(settings.database_url, name, SERVICES_DIR / name / "migrations")
    await topology.declare_all(settings.rabbitmq_url)
    return applied


def health(port: int, host: str = "127.0.0.1") -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as response:
            return json.loads(response.read() or b"{}")
    except Exception:
        return None


class Supervisor:
    """Starts the services as child processes and stops them all cleanly."""

    def __init__(self, settings: Settings, names: list[str], log_dir: Path | None,
                 ports: dict[str, int] | None = None, env: dict[str, str] | None = None) -> None:
        self.settings, self.names, self.log_dir = settings, names, log_dir
        self.ports = ports or {}
        self.env = env or {}
        self.children: dict[str, subprocess.Popen] = {}
        self._files = []

    def port(self, name: str) -> int:
        """Each child gets its own port: an explicit one, else its default plus the offset."""
        return self.ports.get(name) or SERVICE_PORTS[name] + self.settings.http_port_offset

    def start(self) -> None:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            self.start_one(name)

    def start_one(self, name: str) -> None:
        env = {**os.environ, **self.env, "M1_RABBITMQ_URL": self.settings.rabbitmq_url,
               "M1_DATABASE_URL": self.settings.database_url, "M1_HTTP_PORT": str(self.port(name))}
        out = None
        if self.log_dir:
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._files.append(out)
        self.children[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env,
                                               stdout=out, stderr=subprocess.STDOUT if out else None,
                                               start_new_session=True)

    def kill(self, name: str) -> None:
        """SIGKILL one service: no shutdown hooks, no acks, as in a crash."""
        proc = self.children[name]
        proc.kill()
        proc.wait()

    def wait_healthy(self, timeout: float = 60.0, names: list[str] | None = None) -> list[str]:
        """Wait until every service answers /health; return the ones that did not."""
        deadline = time.monotonic() + timeout
        pending = set(names or self.names)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                if self.children[name].poll() is not None:
                    return [f"{name} exited with {self.children[name].returncode}"]
                if (h := health(self.port(name))) and h.get("status") == "ok":
                    pending.discard(name)
            time.sleep(0.2)
        return sorted(pending)

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.children.items() if p.poll() is not None}

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in self._files:
            f.close()
        return {n: p.returncode for n, p in self.children.items()}
