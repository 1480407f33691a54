"""Fault profiles of the sandbox agencies: which faults exist, where they apply, and their arming state.

The table in docs/agencies.md is the specification; ``FAULTS`` below is that table as data. A fault
is armed per agency (``FaultState.arm``); transient faults then fire once, or in one short burst,
from the agency's 2nd page request on, so that a client that retries ends with every row.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote


def agency_transports() -> dict[str, tuple[str, ...]]:
    """agency -> the transports of its feeds, as the feed configs say (connectors.registry): the agencies
    faults can be armed at."""
    from connectors.registry import registry

    return registry().transports


@dataclass(frozen=True)
class Fault:
    """One fault profile: the transports it applies to and, if transient, how many requests it hits."""

    name: str
    transports: frozenset[str]
    shots: int = 0  # requests answered by a transient REST fault per arming (0: not shot-based)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("server_errors", frozenset({"rest"}), shots=3),
        Fault("rate_limit", frozenset({"rest"}), shots=2),
        Fault("read_timeout", frozenset({"rest"}), shots=1),
        Fault("reset", frozenset({"rest"}), shots=1),
        Fault("truncated", frozenset({"rest", "filedrop"}), shots=1),
        Fault("page_twice", frozenset({"rest"}), shots=1),
        Fault("slow", frozenset({"rest", "database"})),
        Fault("trickle", frozenset({"rest"})),
        Fault("renamed_column", frozenset({"rest", "filedrop", "database"})),
        Fault("expired_token", frozenset({"rest"})),
        Fault("empty", frozenset({"rest", "filedrop", "database"})),
        # broken agencies for the connector conformance suite (onboarding/conformance/): permanent
        Fault("repeat_page", frozenset({"rest"})),
        Fault("echo_secret", frozenset({"rest"})),
    )
}

#: the order in which transient REST faults fire when several are armed for one agency
FIRING_ORDER = ("server_errors", "rate_limit", "read_timeout", "reset", "truncated", "page_twice")

#: what ``renamed_column`` renames the identity-number field or header to
RENAMED: dict[str, str] = {
    "id_number": "id_no",
    "legal_rep_id_number": "legal_rep_id_no",
    "公民身份号码": "身份证号",
    "身份证号码": "身份证号",
}
#: what ``renamed_column`` renames in a database view: the same, and in a view without identity numbers
#: (the office's employer subsidies) the credit code
RENAMED_IN_VIEWS: dict[str, str] = {**RENAMED, "uscc": "credit_code"}

#: the seconds ``slow`` adds to every response or query
SLOW_SECONDS = 0.2

#: the seconds between two bytes of a page's body under ``trickle`` (each wait is well inside a read timeout)
TRICKLE_SECONDS = 1.0


def validate(agency: str, faults: list[str] | tuple[str, ...],
             transports: Mapping[str, tuple[str, ...]] | None = None) -> list[str]:
    """The faults for one agency, checked against the table; a ValueError names the agency and the fault.
    ``transports``: agency -> its transports (default: the feed configs' now)."""
    if isinstance(faults, str):
        raise ValueError(f"faults for {agency} must be a list of names, not the string {faults!r}")
    transports = agency_transports() if transports is None else transports
    if agency not in transports:
        raise ValueError(
            f"unknown agency {agency!r} for faults {', '.join(map(str, faults)) or '(none)'} "
            f"(known agencies: {', '.join(transports)})"
        )
    checked: list[str] = []
    for name in faults:
        fault = FAULTS.get(name)
        if fault is None:
            raise ValueError(f"unknown fault {name!r} for agency {agency} (known: {', '.join(FAULTS)})")
        if not fault.transports & set(transports[agency]):
            raise ValueError(
                f"fault {name!r} does not apply to agency {agency} ({', '.join(transports[agency])}); "
                f"it applies to {', '.join(a for a, t in transports.items() if fault.transports & set(t))}"
            )
        if name not in checked:
            checked.append(name)
    return checked


def validate_all(faults: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """A whole fault map checked (see ``validate``); agencies not named get no faults."""
    checked: dict[str, list[str]] = {agency: [] for agency in agency_transports()}
    for agency, names in (faults or {}).items():
        checked[agency] = validate(agency, names)
    return checked


def parse_faults(spec: str) -> dict[str, list[str]]:
    """A fault map from its text form: ``"police=server_errors,rate_limit;justice=empty"``.

    ``all=NAME`` arms NAME at every agency it applies to. Parts are separated by ``;``, faults by
    ``,``; blanks are ignored. A ValueError names the bad part.
    """
    result: dict[str, list[str]] = {}
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        agency, sep, names_text = part.partition("=")
        agency = agency.strip()
        if not sep or not agency:
            raise ValueError(f"fault part {part!r} is not AGENCY=FAULT[,FAULT...]")
        names = [n.strip() for n in names_text.split(",") if n.strip()]
        if agency == "all":
            for name in names:
                if name not in FAULTS:
                    raise ValueError(f"unknown fault {name!r} in {part!r} (known: {', '.join(FAULTS)})")
                for target, transports in agency_transports().items():
                    if FAULTS[name].transports & set(transports):
                        result.setdefault(target, [])
                        if name not in result[target]:
                            result[target].append(name)
            continue
        try:
            checked = validate(agency, names)
        except ValueError as exc:
            raise ValueError(f"{exc} in {part!r}") from None
        merged = result.setdefault(agency, [])
        merged.extend(n for n in checked if n not in merged)
    return result


class FaultState:
    """The faults armed at one agency, and what transient REST faults have already fired.

    Thread-safe: the agency's server answers requests on many threads.
    """

    def __init__(self, agency: str, transports: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.agency = agency
        self.transports = transports  # what arming checks against (default: the feed configs' now)
        self._lock = threading.Lock()
        self._faults: list[str] = []
        self._shots: dict[str, int] = {}
        self._pages = 0
        self._first_body: bytes | None = None
        self._token_revoked = False
        self._repeat_due = False

    def arm(self, faults: list[str]) -> list[str]:
        """Arm these faults (replacing the old ones) and re-arm every transient one."""
        checked = validate(self.agency, faults, self.transports)
        with self._lock:
            self._faults = checked
            self._shots = {n: FAULTS[n].shots for n in checked if FAULTS[n].shots}
            self._pages = 0
            self._first_body = None
            self._token_revoked = False
            self._repeat_due = False
        return checked

    @property
    def faults(self) -> list[str]:
        """The faults armed now."""
        with self._lock:
            return list(self._faults)

    def has(self, name: str) -> bool:
        """Whether ``name`` is armed."""
        return name in self._faults

    def count_page(self) -> int:
        """Count one page request (a valid, authenticated request for records); returns its number."""
        with self._lock:
            self._pages += 1
            return self._pages

    def fire(self, page: int, last: bool = False) -> str | None:
        """The transient fault that answers page request number ``page``, if any (it uses up a shot).

        Transient faults fire from the 2nd page request since arming — or from the 1st when that
        one is also the last page of its window, so that a one-page pull shows the fault too — one
        after the other in ``FIRING_ORDER``, each for its number of shots.
        """
        if not self.eligible(page, last):
            return None
        with self._lock:
            for name in FIRING_ORDER:
                if self._shots.get(name, 0) > 0:
                    self._shots[name] -= 1
                    return name
        return None

    @staticmethod
    def eligible(page: int, last: bool) -> bool:
        """Whether page request number ``page`` is one the faults act on (see ``fire``)."""
        return page >= 2 or last

    def remember_first_body(self, body: bytes) -> bytes:
        """Keep the first page body served since arming (for ``page_twice``); returns the kept one."""
        with self._lock:
            if self._first_body is None:
                self._first_body = body
            return self._first_body

    def take_token_revocation(self) -> bool:
        """True once per arming of ``expired_token``: the caller then revokes the token just used."""
        with self._lock:
            if "expired_token" in self._faults and not self._token_revoked:
                self._token_revoked = True
                return True
            return False

    def repeat_from(self, lo: int, size: int, *, first: bool) -> int:
        """Where a page's records start (``lo``), or under ``repeat_page`` where the 2nd page of a pull does.

        ``first``: the request is a pull's first page. Under ``repeat_page`` the page after a first
        page starts ``size`` records earlier: it brings the whole first page again, then its own
        records (so it is never only rows already sent, and every row still arrives).
        """
        if "repeat_page" not in self._faults:
            return lo
        with self._lock:
            if first:
                self._repeat_due = True
                return lo
            if self._repeat_due:
                self._repeat_due = False
                return max(0, lo - size)
        return lo


def received_credential(headers: Mapping[str, str], api_key_header: str = "x-api-key") -> str | None:
    """The credential a request carried (bearer token, API key, or HTTP Basic password), for ``echo_secret``."""
    auth = headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:] or None
    if auth.startswith("Basic "):
        try:
            _, sep, password = base64.b64decode(auth[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(password) if sep and password else None
    return headers.get(api_key_header.lower()) or None
