"""What the test folders share, in one place: the PostgreSQL server, databases of a test's own, and the
development PKI. tests/conftest.py makes fixtures of them; a test imports
from here only when it needs something the fixtures do not give (a PKI with other stages, a
database for processes of its own)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: the server every PostgreSQL test uses (.ci/run starts it when it is down)
PG_ADMIN_URL = os.environ.get("FUNDX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: an identity number that must never show up in an error message
MARKER_ID = "11010519491231002X"

#: A feed of each transport (REST, file drop, a database view, the office's database) and of each stage: what a
#: whole-night test names (``nightly_exchange(feeds=list(ONE_OF_EACH))``) when its point is not every feed. A
#: night's feed is a Prefect flow run of its own, about a second even when it pulls nothing; a night of every feed
#: pulls 13 (the office's 18,000-row payment ledger among them). tests/flows/test_night.py checks that these still
#: cover every transport and stage; the tests about every feed (a night's counts, no plain PII) pull them all.
ONE_OF_EACH = ("civil_affairs.deaths", "police.deaths", "justice.prisoners", "medical_insurance.bills",
               "tax_bureau.wage_income", "social_insurance.benefit_roll")

_pg_checked: dict[str, str | None] = {}


def pg_problem() -> str | None:
    """Why the PostgreSQL server cannot be used (checked once per process), or None."""
    if "problem" not in _pg_checked:
        import sqlalchemy as sa

        try:
            engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
            _pg_checked["problem"] = None
        except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
            _pg_checked["problem"] = type(exc).__name__
    return _pg_checked["problem"]


def need_pg() -> None:
    """Skip the test when PostgreSQL is not there, saying why; in CI, where it must be, fail it."""
    problem = pg_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not reachable in CI ({problem})")
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL.split('@')[-1]} is not reachable ({problem}); start it, "
                    f"or set FUNDX_TEST_PG_URL")


@contextmanager
def pg_databases(prefix: str = "fundx_test") -> Iterator[Any]:
    """A maker of empty PostgreSQL databases (``make() -> url``), every one dropped at the end."""
    import sqlalchemy as sa

    need_pg()
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    made: list[str] = []

    def make() -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- the sandbox's cities ----------------------------------------------------------------------------


def cached_city(folder: Path, people: int, seed: int | None = None, as_of: Any = None) -> Any:
    """``sandbox.city.generate_city(people, seed, as_of)``, generated once per run and kept (pickled) in
    ``folder``: each call gets a copy of its own, since a sandbox adds the generic feeds' frames to the city it
    serves and a test may change one. The generator is deterministic in (people, seed, as_of) — the golden test
    holds it to its bytes, tests/sandbox/test_city_cache.py holds a copy to the fresh city's."""
    import pickle

    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED, generate_city

    seed = DEFAULT_SEED if seed is None else seed
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    path = folder / f"city-{people}-{seed}-{as_of.isoformat()}.pickle"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        made = generate_city(people, seed=seed, as_of=as_of)
        part = path.with_suffix(".part")
        part.write_bytes(pickle.dumps(made, protocol=5))
        part.replace(path)
    return pickle.loads(path.read_bytes())


# --- the development PKI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A development PKI made by init_keys, with everything already loaded."""

    paths: Any  # fundx.crypto.keys.KeyPaths
    store: Any  # fundx.crypto.keys.KeyStore
    ca: Any
    ca_key: Any
    signer_key: Any
    signer_cert: Any
    _stages: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.paths.dir

    @property
    def crl(self) -> Any:
        return self.store.crl()

    def stage(self, name: str) -> tuple[Any, Any]:
        """The stage's first key and certificate (loaded once: RSA key loading checks the key, slowly)."""
        if name not in self._stages:
            self._stages[name] = self.store.stage_keys(name)[0]
        return self._stages[name]


def load_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def make_pki(home: Path, stages: tuple[str, ...] | None = None) -> Pki:
    """A development PKI under ``home`` (every stage of the feed configs unless ``stages`` says which)."""
    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.pki import init_keys

    paths = init_keys(home, stages) if stages is not None else init_keys(home)
    store = KeyStore(KeySettings(dir=paths.dir))
    key, cert = store.exchange_signer()
    return Pki(paths, store, store.ca(), load_key(paths.ca_key), key, cert)


#: the password of the console accounts tests make with :func:`account`
ACCOUNT_PASSWORD = "correct horse battery staple"


def account(ledger: Any, name: str = "steward-wang", role: str = "steward") -> dict[str, Any]:
    """A console account in ``ledger`` (made once); the CliRunner.invoke arguments that sign a command in as it:
    ``runner.invoke(app, [..., *signed["args"]], input=signed["input"])``."""
    from fundx.console import accounts

    if name not in {a.name for a in accounts.accounts(ledger)}:
        accounts.add_account(ledger, name, role, ACCOUNT_PASSWORD, actor="test-admin")
    return {"args": ["--account", name], "input": ACCOUNT_PASSWORD + "\n"}
