"""The processes of ``make serve``: pid files, whether a pid is still ours, stopping a process group and
every descendant (TERM, then KILL after a grace period), and starting one in its own session with a
private log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeGuard

from deployments.catalog import REPO_ROOT
from fundx.core.process import alive

STOP_GRACE_SECONDS = 20.0


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def ours(pid: int | None) -> TypeGuard[int]:
    """Whether ``pid`` is alive and a Prefect process (not an unrelated process that got the pid again)."""
    if not alive(pid):
        return False
    cmd = _cmdline(pid)
    return cmd is None or "prefect" in cmd


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: list[int], group: int | None, sig: int) -> None:
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(pid: int, grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """TERM the process group ``pid`` leads and every descendant; KILL what is left after ``grace`` s."""
    everyone = [pid, *descendants(pid)]
    group = pid if _leads_group(pid) else None
    _signal(everyone, group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        everyone += [p for p in descendants(pid) if p not in everyone]  # started while stopping
        if not any(alive(p) for p in everyone):
            break
        time.sleep(0.2)
    else:
        _signal([p for p in everyone if alive(p)], group, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in everyone):
            time.sleep(0.1)
    _reap(pid)
    return everyone


def terminate_all(pids: list[int], grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """:func:`terminate` several processes at once (so that N workers take one grace period, not N)."""
    if len(pids) <= 1:
        return [p for pid in pids for p in terminate(pid, grace)]
    with ThreadPoolExecutor(max_workers=len(pids)) as pool:
        return [p for ended in pool.map(lambda pid: terminate(pid, grace), pids) for p in ended]


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def write_private(path: Path, text: str) -> None:
    """A pid or state file, 0600 whatever the umask (written whole: a reader never sees half of it)."""
    from fundx.core.files import write_file_atomic

    write_file_atomic(path, text.encode(), 0o600)


def open_log(path: Path):
    """A log to append to, made 0600 whatever the umask (the servers' logs may name feeds and flow runs)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600), "ab")


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open_log(log) as out:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        out.write(f"\n--- {stamp} started by deployments.run: {' '.join(cmd[1:])}\n".encode())
        out.flush()
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=REPO_ROOT, start_new_session=True)


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in text)
