"""The simulated agencies on loopback, started and stopped together: ``Sandbox``.

A ``Sandbox`` generates (or is handed) a synthetic city and serves every feed of the feed configs
(connectors/feeds/*.yaml, or FUNDX_FEEDS_DIR) as its config says (sandbox/simulated.py): one HTTP
server per REST base URL, a drop folder per file-drop feed, a database per database feed, the
and a control server. The social-insurance office's own system is one of the database agencies (its
five ``social_insurance.*`` feeds are views of one database). It hands the exchange their endpoints
and credentials in ``home/exchange.env`` (mode 0600), under the environment variables the configs
reference. A feed it cannot serve is listed in ``not_simulated`` with the reason. Everything holding
personal data stays under ``home``. docs/agencies.md is the wire contract.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from datetime import date, datetime
from pathlib import Path

import orjson
import pandas as pd

from connectors.registry import registry
from contracts import load_contract
from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, City, generate_city
from sandbox.drops import FileDrop
from sandbox.faults import FaultState, agency_transports, parse_faults, validate, validate_all
from sandbox.generic import NotSimulated, contract_rows, generic_row_count
from sandbox.rest import RestAgency, Router, env_name
from sandbox.simulated import AgencyDB, SimulatedFeed, simulated_feeds
from sandbox.view_db import ViewDB
from sandbox.wire import HttpError, Reply, Request, Server, json_reply, start_server

try:
    from fundx.core.timeutil import SHANGHAI
except ImportError:  # the sandbox also runs without the exchange installed
    from zoneinfo import ZoneInfo

    SHANGHAI = ZoneInfo("Asia/Shanghai")

__all__ = ["Sandbox", "parse_faults"]

log = logging.getLogger("sandbox")


class Sandbox:
    """The simulated agencies of one synthetic city, serving on loopback until stopped."""

    def __init__(
        self,
        home: Path,
        *,
        people: int = 10_000,
        seed: int = DEFAULT_SEED,
        as_of: date = DEFAULT_AS_OF,
        faults: dict[str, list[str]] | None = None,
        medical_db_url: str | None = None,
        city: City | None = None,
        stall_seconds: float = 3.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.home = Path(home).expanduser().resolve()
        self.people = city.people if city is not None else people
        self.seed = city.seed if city is not None else seed
        self.as_of = city.as_of if city is not None else as_of
        self.medical_db_url = medical_db_url
        self.stall_seconds = stall_seconds
        self.host = host
        self._initial_faults = validate_all(faults)  # fail before any work is done
        self._city = city
        self._transports = agency_transports()  # the agencies of the feed configs when it was made
        self._states = {agency: FaultState(agency, self._transports) for agency in self._transports}
        self._rest: dict[str, RestAgency] = {}  # feed -> its REST agency
        self._servers: dict[str, Server] = {}  # the base URL's environment variable -> its server
        self._drops: dict[str, FileDrop] = {}  # feed -> its drop folder
        self._dbs: dict[str, AgencyDB] = {}  # feed -> its database
        self._control: Server | None = None
        self._lock = threading.Lock()
        self._started_at: datetime | None = None
        self.not_simulated: dict[str, str] = {}  # feed -> why the sandbox does not serve it
        self.env: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self.control_url = ""

    # -- life cycle -------------------------------------------------------------------------------

    @property
    def city(self) -> City:
        """The synthetic city the agencies serve (generated at start unless one was given)."""
        if self._city is None:
            raise RuntimeError("the sandbox has no city before start()")
        return self._city

    @property
    def feeds(self) -> list[str]:
        """The feeds the sandbox serves, sorted."""
        return sorted([*self._rest, *self._drops, *self._dbs])

    def start(self) -> Sandbox:
        """Generate the city, write drops and databases, start the servers, hand out exchange.env and sandbox.json."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        began = time.perf_counter()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._city is None:
            self._city = generate_city(self.people, seed=self.seed, as_of=self.as_of)
            log.info("generated a city of %d people in %.1f s", self.people, time.perf_counter() - began)
        city = self.city
        for agency, names in self._initial_faults.items():
            self._states[agency].arm(names)
        city.write_truth(self.home / "truth.json")

        now = datetime.now(SHANGHAI)
        feeds = simulated_feeds()
        for feed, why in registry().broken.items():
            self.not_simulated[feed] = why
            log.warning("not simulated: its config does not load: %s", why)
        drops_of: dict[str, int] = {}
        for sim in feeds.values():
            if sim.transport == "filedrop":
                drops_of[sim.agency] = drops_of.get(sim.agency, 0) + 1
        shared: dict[str, str] = {}  # credentials by environment variable, shared by feeds naming one
        env: dict[str, str] = {}
        rest: dict[str, list[RestAgency]] = {}  # base URL's environment variable -> its feeds' agencies
        for feed, sim in feeds.items():
            try:
                frame = self._frame(sim, city)
                state = self._states[sim.agency]
                if sim.config.rest is not None:
                    app = RestAgency(feed, sim.agency, sim.config.rest, frame, state, self.stall_seconds,
                                     quirks=sim.entry.rest, secrets_by_env=shared)
                    rest.setdefault(env_name(sim.config.rest.base_url, f"{feed}: rest.base_url"), []).append(app)
                    env.update(app.credentials)
                    self._rest[feed] = app
                elif sim.config.filedrop is not None:
                    name = env_name(sim.config.filedrop.directory, f"{feed}: filedrop.directory")
                    folder = self.home / "drops" / (sim.agency if drops_of[sim.agency] == 1 else feed)
                    drop = (sim.entry.drop or FileDrop)(folder, frame, city.as_of, state, now, feed=feed,
                                                        config=sim.config.filedrop)
                    drop.write()
                    self._drops[feed] = drop
                    env[name] = str(drop.folder)
                    self._where(sim, str(drop.folder))
                elif sim.config.database is not None:
                    name = env_name(sim.config.database.url, f"{feed}: database.url")
                    db: AgencyDB
                    if sim.entry.database is not None:
                        db = sim.entry.database(self.home, frame, state, self.medical_db_url)
                    else:
                        db = ViewDB(self.home / "databases" / f"{feed}.db", feed, sim.config.database, frame, state)
                    db.load()
                    self._dbs[feed] = db
                    env[name] = db.url
                    self._where(sim, db.public_url)
            except NotSimulated as exc:
                self.not_simulated[feed] = str(exc)
                log.warning("not simulated: %s", exc)
        for variable, apps in rest.items():
            try:
                app_or_router = apps[0] if len(apps) == 1 else Router(apps)
            except NotSimulated as exc:
                for app in apps:
                    del self._rest[app.feed]
                    self.not_simulated[app.feed] = str(exc)
                continue
            server = start_server(app_or_router, self.host)
            self._servers[variable] = server
            env[variable] = server.url
            for app in apps:
                self._where(feeds[app.feed], server.url)
        self._control = start_server(Control(self), self.host)
        self.control_url = self._control.url

        self.env = dict(sorted(env.items()))
        self._started_at = datetime.now(SHANGHAI)
        _write_private(self.home / "exchange.env", self._env_text())
        self._write_state()
        log.info("agencies up in %.1f s; control at %s", time.perf_counter() - began, self.control_url)

    def _frame(self, sim: SimulatedFeed, city: City) -> pd.DataFrame:
        """The feed's rows: the city generator's, or (no sandbox entry) drawn from its contract once."""
        if sim.feed in city.office:  # the office's system: its feeds with history (sandbox/city/office_feeds.py)
            return city.office[sim.feed]
        if sim.feed not in city.feeds:
            if not sim.generic:
                raise NotSimulated(f"{sim.feed}: its sandbox entry takes its rows from the city generator, "
                                   "which builds none for it")
            contract = load_contract(sim.config.contract)
            city.feeds[sim.feed] = contract_rows(contract, generic_row_count(city.people), seed=city.seed,
                                                 as_of=city.as_of)
        return city.feeds[sim.feed]

    def _where(self, sim: SimulatedFeed, where: str) -> None:
        """Record an endpoint: under the agency, or (an agency with several) under the feed too."""
        if self.urls.setdefault(sim.agency, where) != where:
            self.urls[sim.feed] = where

    def _env_text(self) -> str:
        lines = [
            "# Endpoints and credentials of the sandbox agencies, for the exchange. Secrets: keep private.",
            f"# written by pid {os.getpid()}; valid until that sandbox stops",
        ]
        lines += [f"{k}={v}" for k, v in self.env.items()]
        return "\n".join(lines) + "\n"

    def _write_state(self) -> None:
        """sandbox.json: where everything is, for `fundx sandbox status` — no secrets, no personal data."""
        state = {
            "pid": os.getpid(),
            "started_at": self._started_at.isoformat(timespec="seconds") if self._started_at else None,
            "people": self.people,
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "control_url": self.control_url,
            "urls": self.urls,
            "feeds": self.feeds,
            "not_simulated": self.not_simulated,
            "faults": self.faults,
            "env_file": str(self.home / "exchange.env"),
            "truth": str(self.home / "truth.json"),
        }
        _write_atomic(self.home / "sandbox.json", json.dumps(state, ensure_ascii=False, indent=2) + "\n", 0o644)

    def stop(self) -> None:
        """Stop every server, put back a truncated file, release the databases; remove sandbox.json and exchange.env."""
        for server in [*self._servers.values(), *([self._control] if self._control else [])]:
            server.stop()
        self._servers.clear()
        self._control = None
        for drop in self._drops.values():
            drop.restore_now()
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()
        if self._started_at is not None:
            for name in ("sandbox.json", "exchange.env"):
                path = self.home / name
                if path.is_file() and _written_by_us(path):
                    path.unlink()
            self._started_at = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------------------

    @property
    def faults(self) -> dict[str, list[str]]:
        """The faults armed now, per agency."""
        return {agency: state.faults for agency, state in self._states.items()}

    def set_faults(self, agency: str, faults: list[str]) -> None:
        """Arm these faults at one agency (replacing its old ones; transient ones fire again)."""
        checked = validate(agency, faults, self._transports)
        with self._lock:
            self._states[agency].arm(checked)
            for drop in self._drops.values():
                if drop.faults is self._states[agency]:
                    drop.write()
            for db in self._dbs.values():
                if db.faults is self._states[agency]:
                    db.arm()
            if self._started_at is not None:
                self._write_state()

    # -- ground truth -----------------------------------------------------------------------------

    def expected(self, feed: str, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """The rows this agency serves for the window [start, end), in the order it serves them.

        REST and database: by the incremental column. File drops: the files whose marker was
        modified in the window; justice: for one prisoner the latest file wins. Under the ``empty``
        fault: no rows. Other faults do not change the answer (the rows are the same).
        """
        for bound in (start, end):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("window bounds must be timezone-aware")
        served = self._rest.get(feed) or self._drops.get(feed) or self._dbs.get(feed)
        if served is not None:
            return served.expected(start, end)
        if feed in self.not_simulated:
            raise ValueError(f"feed {feed!r} is not simulated: {self.not_simulated[feed]}")
        if self._started_at is None:
            raise RuntimeError("the sandbox is not started")
        raise ValueError(f"unknown feed {feed!r} (known: {', '.join(self.feeds)})")


class Control:
    """The control server: GET /health, GET /faults, POST /faults {"agency": ..., "faults": [...]}."""

    name = "control"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle(self, request: Request) -> Reply:
        if request.path == "/health" and request.method == "GET":
            return json_reply(200, {"status": "ok", "pid": os.getpid(), "agencies": list(self.sandbox.faults),
                                    "feeds": self.sandbox.feeds, "not_simulated": self.sandbox.not_simulated})
        if request.path == "/faults" and request.method == "GET":
            return json_reply(200, {"faults": self.sandbox.faults})
        if request.path == "/faults" and request.method == "POST":
            try:
                body = orjson.loads(request.body or b"{}")
            except orjson.JSONDecodeError:
                raise HttpError(400, "invalid_request", "the body is not JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("agency"), str) \
                    or not isinstance(body.get("faults"), list):
                raise HttpError(400, "invalid_request", 'expected {"agency": "...", "faults": ["..."]}')
            try:
                self.sandbox.set_faults(body["agency"], body["faults"])
            except ValueError as exc:
                raise HttpError(400, "invalid_fault", str(exc)) from None
            return json_reply(200, {"agency": body["agency"], "faults": self.sandbox.faults[body["agency"]]})
        if request.path in ("/health", "/faults"):
            raise HttpError(405, "method_not_allowed")
        raise HttpError(404, "not_found")


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)  # the umask may have taken bits away
    os.replace(tmp, path)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (mode 0600), atomically."""
    _write_atomic(path, text, 0o600)


def _written_by_us(path: Path) -> bool:
    """Whether sandbox.json / exchange.env belong to this process (not to a sandbox started later)."""
    text = path.read_text(encoding="utf-8")
    return f'"pid": {os.getpid()},' in text or f"written by pid {os.getpid()};" in text
