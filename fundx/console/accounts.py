"""The console's local accounts and sessions, kept in the ledger database.

Two tables of the ledger (defined in :mod:`fundx.ledger.schema` with the rest of its schema, so every ledger
has them whatever was imported when it was made):

- ``console_accounts``: a name, a role (``steward`` decides and unmasks; ``auditor`` reads), the
  password's argon2id hash (argon2-cffi's RFC 9106 profile: 64 MiB, 3 passes, 4 lanes, 16-byte salt)
  and a count of sign-in attempts since the last success, taken before the password is checked: the
  :data:`MAX_FAILURES`-th locks the account for :data:`LOCKOUT` (online guessing), whatever password
  is given, however many attempts arrive at once (:func:`authenticate`);
- ``console_sessions``: one row per signed-in browser. The cookie carries a random token; the ledger
  keeps only its SHA-256, the account, the session's CSRF token, and when it was made, last seen and
  expires. Signing out, removing the account, or the idle and absolute limits end it on the server.

Account changes, sign-ins, refused sign-ins of known accounts and sign-outs are audited. Passwords
never reach the ledger, a log or an error; neither does the session token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import sqlalchemy as sa

from fundx.core.errors import ConfigurationError
from fundx.core.timeutil import UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import UTCDateTime, console_accounts, console_sessions

ROLES = ("steward", "auditor", "inspector", "supervisor")
#: consecutive failed sign-ins that lock an account, and for how long
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
#: a session's last-seen time is written at most this often (a write per page would contend with a night)
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Account:
    """A console account as the console needs it (never its hash)."""

    name: str
    role: str
    created_at: datetime
    last_login_at: datetime | None

    @property
    def may_decide(self) -> bool:
        return self.role == "steward"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, in which role, its CSRF token and when it ends."""

    account: str
    role: str
    csrf: str
    expires_at: datetime

    @property
    def may_decide(self) -> bool:
        """Stewards decide and unmask; auditors only read."""
        return self.role == "steward"


def _now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def hasher():
    """argon2id with argon2-cffi's defaults (RFC 9106's second recommended profile)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """A hash to verify against when the name is unknown, so both cost the same time."""
    return hasher().hash(secrets.token_urlsafe(16))


def check_name(name: str) -> str:
    """An account name: 2 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter (it is the audit trail's actor)."""
    text = (name or "").strip()
    if not _NAME.match(text):
        raise ConfigurationError(f"{text[:40]!r} is not an account name",
                                 action="use 2 to 32 characters a-z, 0-9, '.', '_' or '-', starting with a letter")
    return text


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigurationError(f"unknown role {role!r}", action="give --role " + ", ".join(ROLES))
    return role


def check_password(name: str, password: str) -> str:
    """A password long enough to resist guessing; the message never repeats it."""
    if len(password or "") < MIN_PASSWORD:
        raise ConfigurationError(f"the password is shorter than {MIN_PASSWORD} characters",
                                 action=f"choose a passphrase of at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigurationError(f"the password is longer than {MAX_PASSWORD} characters", action="choose a shorter one")
    if name.lower() in password.lower():
        raise ConfigurationError("the password contains the account name", action="choose another password")
    return password


def _account(row) -> Account:
    return Account(name=row["name"], role=row["role"], created_at=row["created_at"], last_login_at=row["last_login_at"])


def add_account(ledger: Ledger, name: str, role: str, password: str, *, actor: str, reset: bool = False) -> Account:
    """Create an account (or, with ``reset``, give an existing one a new password and role); audited."""
    name, role = check_name(name), check_role(role)
    check_password(name, password)
    digest = hasher().hash(password)
    now = _now()
    with ledger.audited() as conn:
        old = conn.execute(console_accounts.select().where(console_accounts.c.name == name)).mappings().one_or_none()
        if old is not None and not reset:
            raise ConfigurationError(f"the account {name} exists already",
                                     action=f"fundx console add-user {name} --role {role} --reset sets a new password")
        if old is None:
            conn.execute(console_accounts.insert().values(
                name=name, role=role, password_hash=digest, created_at=now, password_set_at=now, failed_logins=0))
            ledger.audit(conn, "console.account_added", name, {"role": role}, actor=actor)
        else:
            conn.execute(console_accounts.update().where(console_accounts.c.name == name).values(
                role=role, password_hash=digest, password_set_at=now, failed_logins=0, locked_until=None))
            conn.execute(console_sessions.delete().where(console_sessions.c.account == name))
            ledger.audit(conn, "console.account_reset", name, {"role": role, "was": old["role"]}, actor=actor)
        row = conn.execute(console_accounts.select().where(console_accounts.c.name == name)).mappings().one()
    return _account(row)


def remove_account(ledger: Ledger, name: str, *, actor: str) -> bool:
    """Remove an account and end its sessions; audited. False if there was none."""
    with ledger.audited() as conn:
        conn.execute(console_sessions.delete().where(console_sessions.c.account == name))
        gone = conn.execute(console_accounts.delete().where(console_accounts.c.name == name)).rowcount
        if gone:
            ledger.audit(conn, "console.account_removed", name, {}, actor=actor)
    return bool(gone)


def accounts(ledger: Ledger) -> list[Account]:
    with ledger.engine.connect() as conn:
        return [_account(r) for r in conn.execute(console_accounts.select().order_by(console_accounts.c.name)).mappings()]


def password_hash(ledger: Ledger, name: str) -> str | None:
    """The stored hash (for tests and audits of the store itself)."""
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(console_accounts.c.password_hash)
                            .where(console_accounts.c.name == name)).scalar_one_or_none()


def authenticate(ledger: Ledger, name: str, password: str) -> Account | None:
    """The account if the name and password match and it is not locked; else None (and the attempt counted).

    The attempt is counted *before* the password is checked, in one UPDATE that also decides the lock
    (:func:`_count_attempt`): however many attempts arrive at once, at most :data:`MAX_FAILURES`
    passwords are checked against an account's hash per lockout, and a locked account refuses even
    its right password. A sign-in clears the count. An unknown name and a locked account cost the
    same argon2 verification as a known one (against a decoy hash), so timing tells neither apart.
    """
    from argon2.exceptions import InvalidHashError, VerificationError

    text = (name or "").strip()
    now = _now()
    known = _NAME.match(text) is not None
    with ledger.transaction() as conn:
        row = _count_attempt(conn, text, now) if known else None
        locked = row is None and known and conn.execute(
            sa.select(console_accounts.c.name).where(console_accounts.c.name == text)).first() is not None
    stored = row["password_hash"] if row is not None else _decoy_hash()
    with _VERIFYING:
        try:
            ok = hasher().verify(stored, password or "")
        except (VerificationError, InvalidHashError):
            ok = False
    if row is None and not locked:
        return None  # no such account: nothing to count or audit
    with ledger.audited() as conn:
        if row is not None and ok:
            values = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
            if hasher().check_needs_rehash(stored):
                values["password_hash"] = hasher().hash(password)
            # the hash checked must still be the account's (not reset or removed meanwhile)
            signed_in = conn.execute(console_accounts.update().where(
                console_accounts.c.name == text, console_accounts.c.password_hash == stored).values(**values)).rowcount
            if signed_in:
                ledger.audit(conn, "console.login", text, {"role": row["role"]}, actor=text)
                return Account(name=text, role=row["role"], created_at=row["created_at"], last_login_at=now)
        attempt = int(row["failed_logins"]) if row is not None else None
        ledger.audit(conn, "console.login_refused", text,
                     {"locked": row is None, "attempt": attempt,
                      "locked_now": attempt is not None and attempt >= MAX_FAILURES}, actor="console")
    return None


#: argon2id verifications running at once (64 MiB each): a burst of sign-ins queues instead of taking gigabytes
_VERIFYING = threading.BoundedSemaphore(4)


def _count_attempt(conn: sa.Connection, name: str, now: datetime) -> sa.RowMapping | None:
    """Count one sign-in attempt of ``name`` unless it is locked: the account's row after counting (its
    hash, and in ``failed_logins`` this attempt's number since the last sign-in), or None if the account
    is locked or unknown.

    One statement reads, counts and locks, so concurrent attempts cannot read the same count (a row
    lock on PostgreSQL, which re-checks the WHERE on the row a concurrent attempt just wrote; the
    database's write lock on SQLite): the attempt numbered :data:`MAX_FAILURES` locks the account for
    :data:`LOCKOUT` as it is counted, and later ones find it locked. A locked account's attempts
    neither count nor extend the lock; once the lock has run out the count starts again from one.
    """
    c = console_accounts.c
    expired = sa.and_(c.locked_until.is_not(None), c.locked_until <= now)
    number = sa.case((expired, 0), else_=c.failed_logins) + 1
    return conn.execute(
        console_accounts.update()
        .where(c.name == name, sa.or_(c.locked_until.is_(None), c.locked_until <= now))
        .values(failed_logins=number,
                locked_until=sa.case((number >= MAX_FAILURES, sa.literal(now + LOCKOUT, UTCDateTime())),
                                     else_=sa.null()))
        .returning(c.role, c.created_at, c.password_hash, c.failed_logins)
    ).mappings().one_or_none()


# --- sessions ----------------------------------------------------------------------------------


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(ledger: Ledger, account: Account, *, lifetime: timedelta) -> tuple[str, Session]:
    """A new session for a signed-in account: (the cookie's token, the session). Expired sessions are swept."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = _now()
    with ledger.transaction() as conn:
        conn.execute(console_sessions.delete().where(console_sessions.c.expires_at < now))
        conn.execute(console_sessions.insert().values(
            id=_token_id(token), account=account.name, csrf=csrf, created_at=now, seen_at=now, expires_at=now + lifetime))
    return token, Session(account=account.name, role=account.role, csrf=csrf, expires_at=now + lifetime)


def session_of(ledger: Ledger, token: str | None, *, idle: timedelta) -> Session | None:
    """The live session a cookie's token names, with the account's current role; None if there is none."""
    if not token:
        return None
    key = _token_id(token)
    query = (sa.select(console_sessions, console_accounts.c.role)
             .join(console_accounts, console_accounts.c.name == console_sessions.c.account)
             .where(console_sessions.c.id == key))
    with ledger.engine.connect() as conn:
        row = conn.execute(query).mappings().one_or_none()
    now = _now()
    if row is None or row["expires_at"] <= now or row["seen_at"] + idle <= now:
        return None
    if now - row["seen_at"] >= _TOUCH_EVERY:
        with ledger.transaction() as conn:
            conn.execute(console_sessions.update().where(console_sessions.c.id == key).values(seen_at=now))
    return Session(account=row["account"], role=row["role"], csrf=row["csrf"], expires_at=row["expires_at"])


def close_session(ledger: Ledger, token: str | None) -> str | None:
    """End the session the token names; returns its account (audited as a sign-out), or None."""
    if not token:
        return None
    key = _token_id(token)
    with ledger.audited() as conn:
        name = conn.execute(sa.select(console_sessions.c.account).where(console_sessions.c.id == key)).scalar_one_or_none()
        if name is None:
            return None
        conn.execute(console_sessions.delete().where(console_sessions.c.id == key))
        ledger.audit(conn, "console.logout", name, {}, actor=name)
    return name
