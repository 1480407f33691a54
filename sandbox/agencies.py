"""The eight simulated agencies on loopback, started and stopped together: ``Sandbox``.

A ``Sandbox`` generates (or is handed) a synthetic city, writes the file drops, the settlement
database, the tax declarations database and the social-insurance office's own database under its home, starts one HTTP server per
REST agency and a control server, and hands the exchange its endpoints and credentials in
``home/exchange.env`` (mode 0600). Everything holding
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

from sandbox.drops import DROP_AGENCIES, FileDrop
from sandbox.faults import TRANSPORTS, FaultState, parse_faults, validate, validate_all
from sandbox.generator import DEFAULT_AS_OF, DEFAULT_SEED, City, generate_city
from sandbox.medical_db import MedicalDB
from sandbox.office_db import OfficeDB
from sandbox.rest import REST_AGENCIES, Police, RestAgency
from sandbox.schema import AGENCIES, FEED_AGENCY
from sandbox.tax_db import TaxDB
from sandbox.wire import HttpError, Reply, Request, Server, json_reply, start_server

try:
    from fundx.core.timeutil import SHANGHAI
except ImportError:  # the sandbox also runs without the exchange installed
    from zoneinfo import ZoneInfo

    SHANGHAI = ZoneInfo("Asia/Shanghai")

__all__ = ["AGENCIES", "Sandbox", "parse_faults"]

log = logging.getLogger("sandbox")

#: agency -> the environment variable that holds its endpoint (URL, folder or database URL)
ENDPOINT_ENV: dict[str, str] = {
    "civil_affairs": "FUNDX_CIVIL_AFFAIRS_URL",
    "police": "FUNDX_POLICE_URL",
    "market_regulation": "FUNDX_MARKET_REGULATION_URL",
    "religious_affairs": "FUNDX_RELIGIOUS_AFFAIRS_DROP",
    "justice": "FUNDX_JUSTICE_DROP",
    "medical_insurance": "FUNDX_MEDICAL_INSURANCE_DB_URL",
    "health_commission": "FUNDX_HEALTH_COMMISSION_URL",
    "tax_bureau": "FUNDX_TAX_BUREAU_DB_URL",
}
#: the social-insurance office's own database (benefit roll, contributions, employer subsidies): not an
#: agency, but handed to the exchange next to them, for the matching stage
OFFICE_ENV = "FUNDX_OFFICE_DB_URL"


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
        self._states = {agency: FaultState(agency) for agency in TRANSPORTS}
        self._rest: dict[str, RestAgency] = {}
        self._servers: dict[str, Server] = {}
        self._drops: dict[str, FileDrop] = {}
        self._db: MedicalDB | None = None
        self._tax: TaxDB | None = None
        self._office: OfficeDB | None = None
        self._control: Server | None = None
        self._lock = threading.Lock()
        self._started_at: datetime | None = None
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
        for agency, cls in DROP_AGENCIES.items():
            drop = cls(self.home / "drops" / agency, city.feeds[AGENCIES[agency]], city.as_of, self._states[agency], now)
            drop.write()
            self._drops[agency] = drop
        self._db = MedicalDB(self.home, city.feeds[AGENCIES["medical_insurance"]], self._states["medical_insurance"],
                             self.medical_db_url)
        self._db.load()
        self._tax = TaxDB(self.home, city.feeds[AGENCIES["tax_bureau"]], self._states["tax_bureau"])
        self._tax.load()
        self._office = OfficeDB(self.home, city)
        self._office.write()

        for agency, app_cls in REST_AGENCIES.items():
            app = app_cls(city.feeds[AGENCIES[agency]], self._states[agency], self.stall_seconds)
            self._rest[agency] = app
            self._servers[agency] = start_server(app, self.host)
        self._control = start_server(Control(self), self.host)
        self.control_url = self._control.url

        self.urls = {agency: server.url for agency, server in self._servers.items()}
        self.urls.update({agency: str(drop.folder) for agency, drop in self._drops.items()})
        self.urls["medical_insurance"] = self._db.public_url
        self.urls["tax_bureau"] = self._tax.url
        self.env = self._exchange_env()
        self._started_at = datetime.now(SHANGHAI)
        _write_private(self.home / "exchange.env", self._env_text())
        self._write_state()
        log.info("agencies up in %.1f s; control at %s", time.perf_counter() - began, self.control_url)

    def _exchange_env(self) -> dict[str, str]:
        civil = self._rest["civil_affairs"]
        police = self._rest["police"]
        market = self._rest["market_regulation"]
        assert isinstance(police, Police) and self._db is not None and self._tax is not None
        env = {ENDPOINT_ENV[a]: self._servers[a].url for a in self._servers}
        env.update({ENDPOINT_ENV[a]: str(d.folder) for a, d in self._drops.items()})
        env["FUNDX_MEDICAL_INSURANCE_DB_URL"] = self._db.url
        env["FUNDX_TAX_BUREAU_DB_URL"] = self._tax.url
        if self._office is not None:
            env[OFFICE_ENV] = self._office.url
        env["FUNDX_CIVIL_AFFAIRS_TOKEN"] = civil.token  # type: ignore[attr-defined]
        env["FUNDX_POLICE_CLIENT_ID"] = police.client_id
        env["FUNDX_POLICE_CLIENT_SECRET"] = police.client_secret
        env["FUNDX_MARKET_REGULATION_API_KEY"] = market.api_key  # type: ignore[attr-defined]
        env["FUNDX_HEALTH_COMMISSION_API_KEY"] = self._rest["health_commission"].api_key  # type: ignore[attr-defined]
        return dict(sorted(env.items()))

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
            "faults": self.faults,
            "env_file": str(self.home / "exchange.env"),
            "truth": str(self.home / "truth.json"),
            "office_db": str(self._office.path) if self._office is not None else None,
        }
        _write_atomic(self.home / "sandbox.json", json.dumps(state, ensure_ascii=False, indent=2) + "\n", 0o644)

    def stop(self) -> None:
        """Stop every server, put back a truncated file, release the database; remove sandbox.json and exchange.env."""
        for server in [*self._servers.values(), *([self._control] if self._control else [])]:
            server.stop()
        self._servers.clear()
        self._control = None
        for drop in self._drops.values():
            drop.restore_now()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._tax is not None:
            self._tax.close()
            self._tax = None
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
        checked = validate(agency, faults)
        with self._lock:
            self._states[agency].arm(checked)
            if agency in self._drops:
                self._drops[agency].write()
            elif agency == "medical_insurance" and self._db is not None:
                self._db.arm()
            elif agency == "tax_bureau" and self._tax is not None:
                self._tax.arm()
            if self._started_at is not None:
                self._write_state()

    # -- ground truth -----------------------------------------------------------------------------

    def expected(self, feed: str, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """The rows this agency serves for the window [start, end), in the order it serves them.

        REST and database: by the incremental column. File drops: the files whose marker was
        modified in the window; justice: for one prisoner the latest file wins. Under the ``empty``
        fault: no rows. Other faults do not change the answer (the rows are the same).
        """
        agency = FEED_AGENCY.get(feed)
        if agency is None:
            raise ValueError(f"unknown feed {feed!r} (known: {', '.join(FEED_AGENCY)})")
        for bound in (start, end):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("window bounds must be timezone-aware")
        if agency in self._rest:
            frame = self._rest[agency].index.expected(start, end)
            return frame.iloc[0:0] if self._states[agency].has("empty") else frame
        if agency in self._drops:
            return self._drops[agency].expected(start, end)
        if agency == "tax_bureau":
            if self._tax is None:
                raise RuntimeError("the sandbox is not started")
            return self._tax.expected(start, end)
        if self._db is None:
            raise RuntimeError("the sandbox is not started")
        return self._db.expected(start, end)


class Control:
    """The control server: GET /health, GET /faults, POST /faults {"agency": ..., "faults": [...]}."""

    name = "control"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle(self, request: Request) -> Reply:
        if request.path == "/health" and request.method == "GET":
            return json_reply(200, {"status": "ok", "pid": os.getpid(), "agencies": list(AGENCIES)})
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
