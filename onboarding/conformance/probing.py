"""The machinery the checks share: log capture, one pull that may fail, probe configs and the suite's wording."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from connectors.base import Connector, Pull
from connectors.config import FeedConfig
from fundx.core.errors import FundxError
from fundx.core.timeutil import SHANGHAI, Window
from onboarding.conformance.fault_control import FaultControl

#: the environment variables the probes set (never a real credential)
PROBE_SECRET_ENV = "FUNDX_CONFORMANCE_PROBE_SECRET"  # noqa: S105 - the variable's name, not a secret
PROBE_URL_ENV = "FUNDX_CONFORMANCE_PROBE_URL"


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ while inside; what was there before is put back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def describe(error: FundxError) -> str:
    """A check's wording of an error: its kind and its (content-free) message."""
    return f"{error.kind}: {error}"


class LogCapture(logging.Handler):
    """Keeps every log record it is handed, for the checks to search."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[tuple[str, str]]:
        """(logger, text) of every record: the formatted message and any traceback."""
        out = []
        formatter = logging.Formatter()
        for record in self.records:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken log call: look at its parts
                text = f"{record.msg} {record.args}"
            if record.exc_info:
                text += "\n" + formatter.formatException(record.exc_info)
            out.append((record.name, text))
        return out


@contextlib.contextmanager
def capture_logs(logger: str = "", level: int = logging.DEBUG) -> Iterator[LogCapture]:
    """Every log record of ``logger`` (default: all) at ``level`` and above while inside."""
    handler = LogCapture()
    target = logging.getLogger(logger)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(level)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


def retry_count(capture: LogCapture) -> int:
    """Retries the shared retrier logged (``fundx.core.retry`` warnings)."""
    return sum(1 for r in capture.records if r.name == "fundx.retry" and r.levelno >= logging.WARNING)


@dataclass
class Attempt:
    """One pull that may fail: its pull or its error, the retries made and how long it took."""

    pull: Pull | None
    error: BaseException | None
    retries: int
    seconds: float


def attempt(connector: Connector, window: Window) -> Attempt:
    """One pull that may fail: its pull or error, and the retries the retrier logged."""
    started = time.monotonic()
    with capture_logs("fundx.retry", logging.WARNING) as capture:
        try:
            pull = connector.extract(window)
        except Exception as exc:  # noqa: BLE001 - the check judges whatever the connector raised
            return Attempt(None, exc, retry_count(capture), time.monotonic() - started)
    return Attempt(pull, None, max(pull.retries, retry_count(capture)), time.monotonic() - started)


def keys_of(frame: pd.DataFrame, key: tuple[str, ...]) -> set[Any]:
    """The frame's keys (a value, or a tuple for a composite key)."""
    if len(key) == 1:
        return set(frame[key[0]].tolist())
    return set(frame[list(key)].itertuples(index=False, name=None))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url_password(url: str) -> str | None:
    """The password in a database URL, if it has one."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001 - any URL sqlalchemy cannot parse has no password to hide
        return None


def with_section(config: FeedConfig, **changes: Any) -> FeedConfig:
    """A copy of the config with fields of its transport's section changed."""
    section = config.section.model_copy(update=changes)
    return config.model_copy(update={config.transport: section})


def with_page_size(config: FeedConfig, size: int) -> FeedConfig:
    """A copy of a REST feed's config with pages of ``size``."""
    assert config.rest is not None
    paging = config.rest.paging.model_copy(update={"page_size": size})
    return with_section(config, paging=paging)


@contextlib.contextmanager
def armed(control: FaultControl, agency: str, faults: list[str]) -> Iterator[None]:
    """Faults armed at one agency; the ones armed before are put back afterwards."""
    before = control.get(agency)
    control.set(agency, faults)
    try:
        yield
    finally:
        control.set(agency, before)


def plural(n: int, what: str) -> str:
    """``1 row``, ``2 rows``."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def window_text(window: Window) -> str:
    """A window as the messages write it: [start, end) in Shanghai time, to the minute."""
    fmt = "%Y-%m-%d %H:%M"
    return f"[{window.start.astimezone(SHANGHAI).strftime(fmt)}, {window.end.astimezone(SHANGHAI).strftime(fmt)})"
