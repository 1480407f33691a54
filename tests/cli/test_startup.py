"""Issue 22, part 1: from a fresh home every `fundx` command either works or fails in one clear line, fast.

Each command runs as a person runs it — the real entry point in a child process, a FUNDX_HOME that does not
exist yet (nor its parent), no sandbox — and must end with exit code 0, or with a non-zero code and one
`error:` line on stderr naming what to set or do, no traceback. A hang is caught by the child's timeout
(generous: speed is the bench's business, not a test's). Then each prerequisite the start-up checks
(fundx.cli.preflight) is broken on purpose — a home that cannot be made, a ledger server that is down, a
Prefect server that does not answer, Prefect's database down, a key that cannot be read, a feed's setting
missing — and the command names it in one line before Prefect starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from fundx.cli import app

#: arguments for the commands that need some; a new command with required arguments must be added here
ARGUMENTS = {
    "pull": ["religious_affairs.deaths"],
    "backfill": ["religious_affairs.deaths", "--from", "2026-01-01", "--to", "2026-02-01"],
    "failures show": ["nope", "--account", "wang"],
    "failures release": ["nope", "--reason", "a reason long enough", "--account", "wang"],
    "failures reject": ["nope", "--reason", "a reason long enough", "--account", "wang"],
    "orders show": ["1"],
    "stops resend": ["STOP-O20260301-1-0001-202603", "--account", "wang"],
    "cases list": ["--account", "wang"],
    "cases show": ["O20260301-1-0001", "--account", "wang"],
    "cases take": ["O20260301-1-0001", "--account", "wang"],
    "cases submit": ["O20260301-1-0001", "--account", "wang", "--outcome", "confirmed"],
    "cases review": ["O20260301-1-0001", "--account", "wang", "--approve"],
    "cases accept": ["O20260301-1-0001", "--account", "wang"],
    "cases send-back": ["O20260301-1-0001", "--account", "wang", "--reason", "the stop month is wrong"],
    "cases report": ["--quarter", "2026Q4", "--account", "wang"],
    "cases monthly": ["--month", "2026-11", "--account", "wang"],
    "connector check": ["religious_affairs.deaths"],
    "contract infer": ["/nonexistent/sample.csv"],
    "contract diff": ["/nonexistent/old.yaml", "/nonexistent/new.yaml"],
    "contract release": ["religious_affairs.deaths"],
    "contract check": ["religious_affairs.deaths", "/nonexistent/deaths.parquet"],
    "console add-user": ["wang", "--role", "steward"],
    "console remove-user": ["wang"],
    "stage receive": ["--all"],
    "keys rotate": ["death_matching"],
    "keys revoke": ["death_matching"],
    "backup restore": ["/nonexistent/fundx-backup", "--home", "/nonexistent/restored"],
}
#: commands that start something that keeps running or write into the repository: not for this sweep
NOT_HERE = {
    "demo": "builds a city and runs a whole night (tests/cli/test_cli.py runs it)",
    "sandbox start": "starts the simulated agencies in the background (tests/cli/test_cli.py)",
    "connector new": "writes a feed's files into the repository (tests/onboarding)",
}


def commands() -> list[str]:
    found = []

    def walk(command, path):
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        elif path:
            found.append(" ".join(path))

    walk(typer.main.get_command(app), [])
    return found


def fundx(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("FUNDX_", "PREFECT_")) or k in ("FUNDX_CITY",)}
    return subprocess.run([sys.executable, "-m", "fundx", *args], capture_output=True, text=True, timeout=120,
                          env={**keep, "FUNDX_HOME": str(home), "FUNDX_SANDBOX_HOME": str(home.parent / "agencies"),
                               "FUNDX_CONSOLE_PASSWORD": "a long enough password 12", **env},
                          stdin=subprocess.DEVNULL, check=False)


def one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed in one `error:` line, without a traceback; that line."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return errors[0]


def test_every_command_is_in_the_sweep():
    everything = commands()
    assert {"night", "pull", "status", "failures show", "ledger upgrade"} <= set(everything)
    for name in everything:
        if name in NOT_HERE:
            continue
        command = typer.main.get_command(app)
        for part in name.split():
            command = command.commands[part]
        needs = [p for p in command.params if p.required]
        assert not needs or name in ARGUMENTS, f"fundx {name} needs arguments: add them to ARGUMENTS"


@pytest.mark.parametrize("name", [c for c in commands() if c not in NOT_HERE])
def test_from_a_fresh_home_a_command_works_or_fails_in_one_clear_line(tmp_path, name):
    home = tmp_path / "not" / "yet" / "home"
    done = fundx(home, *name.split(), *ARGUMENTS.get(name, []))
    if done.returncode:
        if done.stderr.strip():  # some commands report a state on stdout with exit 1 (sandbox status, notify test)
            one_clear_line(done)
        assert "Traceback" not in done.stdout + done.stderr
    assert home.is_dir() and (home.stat().st_mode & 0o777) == 0o700


def test_a_home_that_cannot_be_made_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_clear_line(fundx(blocker / "home", "status"))
    assert "FUNDX_HOME" in line and "cannot be made or written" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with ends: nobody listens there


def test_a_ledger_whose_server_is_down_is_named(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/fundx"
    line = one_clear_line(fundx(tmp_path / "home", "status", FUNDX_LEDGER_URL=url))
    assert "FUNDX_LEDGER_URL" in line and "cannot be opened" in line and "unset it" in line


def test_a_prefect_server_that_does_not_answer_is_named_before_anything_starts(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    done = fundx(tmp_path / "home", "pull", "religious_affairs.deaths", FUNDX_RELIGIOUS_AFFAIRS_DROP=str(drop),
                 PREFECT_API_URL=f"http://127.0.0.1:{_closed_port()}/api")
    line = one_clear_line(done)
    assert "PREFECT_API_URL" in line and "make serve" in line


def test_prefects_database_down_is_named(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/prefect"
    line = one_clear_line(fundx(tmp_path / "home", "pull", "religious_affairs.deaths",
                                FUNDX_RELIGIOUS_AFFAIRS_DROP=str(drop), PREFECT_SERVER_DATABASE_CONNECTION_URL=url))
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" in line


def test_a_prefect_home_that_cannot_be_made_is_named(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_clear_line(fundx(tmp_path / "home", "pull", "religious_affairs.deaths",
                                FUNDX_RELIGIOUS_AFFAIRS_DROP=str(drop), PREFECT_HOME=str(blocker / "prefect")))
    assert "PREFECT_HOME" in line


def test_a_key_that_cannot_be_read_is_named(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    missing = tmp_path / "keys"
    line = one_clear_line(fundx(tmp_path / "home", "pull", "religious_affairs.deaths",
                                FUNDX_RELIGIOUS_AFFAIRS_DROP=str(drop),
                                FUNDX_KEYS_EXCHANGE_KEY=str(missing / "exchange.key"),
                                FUNDX_KEYS_EXCHANGE_CERT=str(missing / "exchange.crt"), FUNDX_KEYS_CA=str(missing / "ca.crt")))
    assert "FUNDX_KEYS_" in line


def test_a_feeds_missing_setting_is_named_before_prefect_starts(tmp_path):
    line = one_clear_line(fundx(tmp_path / "home", "pull", "religious_affairs.deaths"))
    assert "FUNDX_RELIGIOUS_AFFAIRS_DROP" in line and "fundx sandbox start" in line
    assert not (tmp_path / "home" / "prefect" / "prefect.db").exists()  # Prefect never started
    night = one_clear_line(fundx(tmp_path / "home", "night"))
    assert "no feed can run" in night and "fundx sandbox start" in night
