"""Process-tree helpers for running the service as a subprocess (`journey serve` under tests and
benchmarks): a free loopback port, the processes below a pid, their memory, a clean stop.

Linux ``/proc`` only (BentoML workers run in process groups of their own, so the tree is walked
by parent pid)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(x) for x in fh.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port that is free now and outside the kernel's ephemeral range.

    Asking the kernel for port 0 hands out an *ephemeral* port, which any outgoing connection
    (an HTTP client, a Spark worker) may take between this call and the server's bind: a CI run
    failed that way ("Could not bind"). Ports below the ephemeral range are only ever taken by
    listeners that ask for them by number."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(10000, 30000) if not low <= p <= high] or list(range(high + 1, 65536))
    rng = random.Random(os.getpid() ^ time.time_ns())
    for port in rng.sample(candidates, min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port found outside the ephemeral range")


def _parents() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid``."""
    children = _parents()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _alive(pid: int) -> bool:
    """Still running and still a BentoML/journey process (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except OSError:
        return False
    return b"bentoml" in cmd or b"journey" in cmd


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server (started in a new session: its group) and let it stop its workers; any
    process of it still alive after 30 s is killed by id."""
    below = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    deadline = time.time() + 10
    alive = below
    while alive and time.time() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.5)
    for p in ([proc.pid] if proc.poll() is None else []) + [p for p in alive if _alive(p)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
