"""CPU seconds by role on this machine, for the benchmarks' reports (Linux /proc)."""

from __future__ import annotations

import os
from collections import Counter


def cpu_seconds(roles: dict[int, str]) -> Counter[str]:
    """CPU seconds used so far by every process on this machine (Linux /proc), by role:
    ``roles`` names this run's own processes (services or bare hops); then PostgreSQL,
    RabbitMQ, this benchmark, and everything else."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    roles = {os.getpid(): "bench", **roles}
    out: Counter[str] = Counter()
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                program = f.read().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        if int(pid) in roles:
            role = roles[int(pid)]
        elif "postgres" in program:
            role = "postgres"
        elif "beam.smp" in program:
            role = "rabbitmq"
        else:
            role = "other"
        out[role] += (int(fields[11]) + int(fields[12])) / ticks
    return out
