"""Loading the stages' stores: received batches, pseudonymised.

A received batch is opened again part by part (:func:`fundx.crypto.opening.open_sealed` with the stage's key,
signer checked to be the exchange, manifest checked to name the batch): no byte that was not
verified is used. Its rows go through DuckDB once, a part at a time (one part's plain rows in memory, never
the whole batch): identity numbers become tokens and masked numbers, only the columns the rules need are
kept, written to the stage's store (:class:`matching.store.Store`) FILE_ROWS rows at a time as the parts come
(:class:`Kept`: one encrypted file each, ``<table>/<batch>/``), the batch committed once every part is in. The
identity behind each token goes to the vault, sealed to the investigators, a part at a time. A batch already
in the store is not loaded again.

The social-insurance office's own data (the benefit roll, the payment ledger, contributions, employer
subsidies, the account change log) arrives the same way: the office's system is an agency whose
feeds (``social_insurance.*``) are pulled, checked, sealed and delivered to their stages like any
other; nothing here reads the office's database. A roll entry's ``area`` is its ``paying_district``
(the district whose office pays it, where the inspection order goes: the config maps it to
``area``), or the area code of the person's number where the roll does not say (``district_given``
false: the order is then routed by the number, matching.sql.routed): a number keeps the code of the
place that first issued it, which is often another province.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fundx.core.errors import ConfigurationError, ManifestError, UnknownSignerError
from fundx.core.files import write_file_atomic
from fundx.core.settings import get_settings
from fundx.crypto.certificates import common_name
from fundx.crypto.keys import KeyStore
from fundx.crypto.manifest import Manifest
from fundx.crypto.opening import open_sealed, recipients_among
from fundx.crypto.seal import seal
from fundx.stage import DONE, RECEIPT, Stage
from matching import pseudonym
from matching.sql import KEYS, one_per_key_in_batch, past_memory
from matching.store import ROW_GROUP, BatchWriter, Store

log = logging.getLogger("fundx.matching")

INVESTIGATORS = "investigators"

def _types(table: str) -> dict[str, str]:
    """A known store table's column types (matching.rules.EMPTY); empty for a table no rule reads."""
    from matching.rules import EMPTY

    spec = EMPTY.get(table, "")
    return dict(col.strip().split(" ", 1) for col in spec.split(",") if col.strip())


@dataclass(frozen=True)
class FeedPlan:
    """What the stage keeps of a feed (:func:`feed_plan`): its store table; ``sql``, SQL over the batch ``src``
    giving the kept rows (with the ``token`` macro inline: self-contained); ``vault``, SQL for the vault's rows
    or None; ``tokened``, the same as ``sql`` but reading each token from a column ``__token_<i>`` of ``src``, the
    token of ``tokens[i]`` (an SQL expression over ``src``), which :func:`with_tokens` adds: a part's tokens
    computed once per distinct value rather than once per row (a person's months in the ledger, an account)."""

    table: str
    sql: str
    vault: str | None
    tokens: tuple[str, ...]
    tokened: str
    #: ``vault`` reading the identity's token from its ``__token_<i>`` column (:func:`with_tokens`), not computing it
    vault_tokened: str | None = None


def feed_sql(feed: str) -> tuple[str, str, str | None]:
    """(store table, SQL over the batch ``src`` giving what the stage keeps, SQL for the vault or None)
    from the ``matching:`` section of the feed's config (:func:`feed_plan`)."""
    plan = feed_plan(feed)
    return plan.table, plan.sql, plan.vault


def feed_plan(feed: str) -> FeedPlan:
    """What the stage keeps of ``feed`` (:class:`FeedPlan`), from the ``matching:`` section of the feed's config.
    ConfigurationError naming the feed when a table a rule reads would miss a column."""
    from connectors import load_feed
    from connectors.config import AccountNumber, MonthNumber, NotNull, PersonToken, UsccArea

    config = load_feed(feed)
    if config.matching is None:
        raise ConfigurationError(f"feed {feed} has no matching: section, so its stage keeps nothing of it",
                                 feed=feed, action=f"add matching: (table, columns) to connectors/feeds/{feed}.yaml")
    section = config.matching
    types = _types(section.table)
    q = lambda name: '"' + name + '"'  # noqa: E731  (names are checked identifiers)
    select, made = [], set()
    tokens: list[str] = []  # the expressions tokenised, in order: select holds "\0<i>\0" where the token goes

    def token(expr: str) -> str:
        tokens.append(expr)
        return f"\0{len(tokens) - 1}\0"

    identity = name = None
    area = section.columns.get("area")
    for column, source in section.columns.items():
        if column == "id_number":
            identity = q(source)
            where = f"substr({identity}, 1, 6)"
            if isinstance(area, str):  # the district the feed names, else the number's area
                where = f"COALESCE(CAST({q(area)} AS VARCHAR), {where})"
            select += [f"{token(identity)} AS person", f"id_masked({identity}) AS id_masked", f"{where} AS area"]
            made |= {"person", "id_masked", "area"}
            if "district_given" in types:  # whether that area is the district the feed named (matching.sql.routed)
                given = f"({q(area)} IS NOT NULL)" if isinstance(area, str) else "FALSE"
                select.append(f"{given} AS district_given")
                made.add("district_given")
            continue
        if column == "area" and "id_number" in section.columns:
            continue
        if column == "name":
            name = q(source)
            if "name_token" in types:  # names compared across sources without being kept: one form, tokenised
                select.append(f"{token(f'name_key({name})')} AS name_token")
                made.add("name_token")
            continue
        if isinstance(source, NotNull):
            expr = f"({q(source.not_null)} IS NOT NULL)"
        elif isinstance(source, UsccArea):
            expr = f"substr({q(source.uscc_area)}, 3, 6)"
        elif isinstance(source, AccountNumber):  # kept as its token and masked, never whole
            account = f"CAST({q(source.account_number)} AS VARCHAR)"
            select.append(f"account_masked({account}) AS {q(column + '_masked')}")
            made.add(column + "_masked")
            expr = token(account)
        elif isinstance(source, PersonToken):  # another person's number (a spouse's): the token only
            expr = token(f"NULLIF(trim(CAST({q(source.person_token)} AS VARCHAR)), '')")
        elif isinstance(source, MonthNumber):
            text = f"CAST({q(source.month)} AS VARCHAR)"
            expr = f"(TRY_CAST(substr({text}, 1, 4) AS INTEGER) * 12 + TRY_CAST(substr({text}, 6, 2) AS INTEGER) - 1)"
        else:
            kind = types.get(column, "")
            expr = {"DATE": f"TRY_CAST(substr(CAST({q(source)} AS VARCHAR), 1, 10) AS DATE)",
                    "DOUBLE": f"TRY_CAST({q(source)} AS DOUBLE)",
                    "VARCHAR": f"CAST({q(source)} AS VARCHAR)"}.get(kind, q(source))
        select.append(f"{expr} AS {q(column)}")
        made.add(column)
    if "feed" in types and "feed" not in made:
        select.insert(0, f"'{feed}' AS feed")
        made.add("feed")
    missing = sorted(set(types) - made - {"received_at", "name_token"})  # a feed without names: no name_token
    if missing:
        raise ConfigurationError(
            f"feed {feed}: the matching stage's table {section.table} needs {', '.join(missing)}, which "
            f"matching.columns does not give", feed=feed,
            action=f"map them in the matching: section of connectors/feeds/{feed}.yaml")
    vault = vault_tokened = None
    if identity is not None:  # each (number, name) once, then its token
        # S608: identifiers from the feed's checked config, quoted; no values in the text
        distinct = f"{identity} AS i, {name or 'NULL::VARCHAR'} AS n FROM src WHERE {identity} IS NOT NULL"
        vault = f"SELECT token(i) AS person, i AS id_number, n AS name FROM (SELECT DISTINCT {distinct})"  # noqa: S608
        made_token = f'"{TOKEN_COLUMN}{tokens.index(identity)}"'  # the person's token, made once by with_tokens
        vault_tokened = ("SELECT t AS person, i AS id_number, n AS name FROM "  # noqa: S608 - as above
                         f"(SELECT DISTINCT {made_token} AS t, {distinct})")
    listed = ", ".join(select)
    inline = re.sub("\0(\\d+)\0", lambda m: f"token({tokens[int(m.group(1))]})", listed)
    from_columns = re.sub("\0(\\d+)\0", lambda m: f'"{TOKEN_COLUMN}{m.group(1)}"', listed)
    return FeedPlan(section.table, f"SELECT {inline} FROM src", vault, tuple(tokens),  # noqa: S608 - as above
                    f"SELECT {from_columns} FROM src", vault_tokened)  # noqa: S608 - as above


#: the columns :func:`with_tokens` adds to a part: ``__token_<i>``, the token of FeedPlan.tokens[i]
TOKEN_COLUMN = "__token_"  # noqa: S105 - a column name, not a secret


#: the rows of each Arrow batch DuckDB is given to scan (:func:`in_batches`)
DUCKDB_BATCH_ROWS = 16_384


def in_batches(rows: pa.Table) -> pa.Table:
    """``rows`` as Arrow batches of at most DUCKDB_BATCH_ROWS rows (slices of the same buffers, no copy). DuckDB
    scans a registered table's batches in parallel, a batch per thread: a part read as one batch of 50,000 rows
    kept one core busy and the other idle (its tokens took twice as long, measured on two cores)."""
    return pa.Table.from_batches(rows.to_batches(max_chunksize=DUCKDB_BATCH_ROWS), schema=rows.schema)


def with_tokens(con: duckdb.DuckDBPyConnection, rows: pa.Table, plan: FeedPlan) -> pa.Table:
    """``rows`` with a column ``__token_<i>`` for each of the plan's token expressions: the expression's values
    dictionary-encoded and each distinct value tokenised once (the ``token`` macro of matching.pseudonym, on
    ``con``), in the rows' order; NULL where the expression is."""
    if not plan.tokens:
        return rows
    con.register("token_src", in_batches(rows))
    try:
        values = con.sql("SELECT " + ", ".join(f"CAST({e} AS VARCHAR) AS e{i}"  # noqa: S608 - the plan's expressions
                                               for i, e in enumerate(plan.tokens)) + " FROM token_src").to_arrow_table()
    finally:
        con.unregister("token_src")
    for i in range(len(plan.tokens)):
        encoded = values.column(i).combine_chunks().dictionary_encode()
        con.register("token_in", in_batches(pa.table({"v": encoded.dictionary.cast(pa.string())})))
        try:
            made = con.sql("SELECT token(v) AS t FROM token_in").to_arrow_table().column("t").combine_chunks()
        finally:
            con.unregister("token_in")
        rows = rows.append_column(f"{TOKEN_COLUMN}{i}", made.take(encoded.indices))
    return rows


def stages() -> tuple[str, ...]:
    """The matching stages: the stages the feed configs deliver to (connectors.registry), sorted."""
    from connectors.registry import registry

    return registry().stages


@dataclass(frozen=True)
class Loaded:
    """One batch or snapshot put into a store: counts only."""

    stage: str
    table: str
    name: str
    rows: int


def connect(keys: KeyStore) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the pseudonym macros keyed with the office's key, holding at most
    FUNDX_MATCHING_MEMORY (DuckDB's own memory: its joins, aggregates and temporary tables; a bad value stops
    here, naming the setting). It spills nowhere (a query past the limit fails) until :func:`allow_spill`: the
    batches it loads hold plain identity numbers."""
    con = duckdb.connect(config={"memory_limit": get_settings().matching_memory})
    con.execute("SET temp_directory = ''")
    # No automatic checkpoint: past 16 MiB of changes DuckDB checkpointed the temporary tables the rules read,
    # compressing every column of them again (FSST, zstd) while the next table was copied in: 9 of the 17 s
    # the copy took at a million people, and the rules ran no faster for it (docs/capacity.md). Past
    # FUNDX_MATCHING_MEMORY the tables spill uncompressed, which takes more disk under FUNDX_HOME.
    con.execute("SET checkpoint_threshold = '1TB'")
    pseudonym.install(con, keys.match_key())
    return con


def allow_spill(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Let DuckDB spill past FUNDX_MATCHING_MEMORY into ``folder`` (made 0700; the caller removes it after the
    night): only once every batch is loaded, so that only pseudonymised rows can be written there."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    con.execute("SET temp_directory = ?", [str(folder)])


def spill_dir(home: Path) -> Path:
    """Where one matching night's DuckDB spills (pseudonymised rows only): FUNDX_HOME/matching/spill-<pid>."""
    return Path(home) / "matching" / f"spill-{os.getpid()}"


def _received_parts(stage: Stage, batch: str) -> list[Path]:
    folder = stage.received_dir / batch
    return sorted(p for p in folder.iterdir() if p.name not in (RECEIPT, DONE) and p.suffix == ".p7m")


def open_parts(stage: Stage, batch: str, keys: KeyStore) -> Iterator[tuple[Manifest, pa.Table]]:
    """A received batch's parts, each verified again and opened one at a time: its manifest and its rows. Only
    one part's rows are in memory while the caller uses them (a part is at most FUNDX_PART_BYTES of Parquet)."""
    pairs = keys.stage_keys(stage.name)
    ca, crl, exchange = keys.ca(), keys.crl(), keys.exchange_certificate()
    parts = _received_parts(stage, batch)
    if not parts:
        raise ManifestError(f"batch {batch}: no parts in {stage.received_dir / batch}")
    for number, path in enumerate(parts, start=1):
        data = path.read_bytes()
        mine = recipients_among(data, [c for _, c in pairs])
        if not mine:
            raise ManifestError(f"batch {batch}: part {number} is sealed for no key of stage {stage.name} "
                                f"(was its key retired without keys/retired?)")
        key = next(k for k, c in pairs if c is mine[0])
        opened = open_sealed(data, recipient_key=key, recipient_cert=mine[0], trusted_ca=ca, crl=crl,
                             expect={"recipient": stage.name})
        del data
        if opened.signer.subject != exchange.subject:
            raise UnknownSignerError(f"batch {batch}: part {number} is signed by CN={common_name(opened.signer)!r}")
        m = opened.manifest
        assert m is not None
        if m.batch_id != batch or m.part != number or m.parts != len(parts):
            raise ManifestError(f"batch {batch}: file {number} holds part {m.part} of {m.parts} of {m.batch_id}")
        rows = pq.read_table(io.BytesIO(opened.payload))
        del opened
        yield m, rows


def received_at(stage: Stage, batch: str) -> str:
    """When the stage received the batch (its receipt)."""
    receipt = json.loads((stage.received_dir / batch / RECEIPT).read_text(encoding="utf-8"))
    return str(receipt.get("at", ""))


def _seal_vault(keys: KeyStore, stage: str, manifest: Manifest, rows: pa.Table, home: Path) -> None:
    """token -> identity number and name of a batch's part (the rows no earlier part gave), sealed to the
    investigators (the stage cannot open it): ``vault/<batch>.p7m`` for the first, ``<batch>+<part>.p7m`` after
    ('+' is in no batch name); matching.run.read_vault reads them all."""
    buf = io.BytesIO()
    pq.write_table(rows, buf, compression="zstd")
    signer_key, signer_cert = keys.stage_signer(stage)
    vault_manifest = Manifest(
        batch_id=manifest.batch_id, feed=manifest.feed, window_start=manifest.window_start,
        window_end=manifest.window_end, part=manifest.part, parts=manifest.parts, rows=rows.num_rows,
        content_digest=manifest.content_digest, contract_version=manifest.contract_version,
        recipient=INVESTIGATORS, created_at=datetime.now(UTC).isoformat())
    sealed = seal(buf.getvalue(), vault_manifest, signer_key=signer_key, signer_cert=signer_cert,
                  recipients=keys.recipient_certificates(INVESTIGATORS))
    folder = vault_dir(home, stage)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = manifest.batch_id if manifest.part == 1 else f"{manifest.batch_id}+{manifest.part:04d}"
    write_file_atomic(folder / f"{name}.p7m", sealed, 0o600)


def vault_dir(home: Path, stage: str) -> Path:
    return Path(home) / "stages" / stage / "vault"


def load_batches(stage_name: str, *, con: duckdb.DuckDBPyConnection, keys: KeyStore,
                 home: Path | None = None) -> list[Loaded]:
    """Put every received batch of a stage that is not in its store yet into it: its kept rows written to the store
    a file of FILE_ROWS rows at a time and committed at the end (matching.store.BatchWriter), its vault a part at a
    time."""
    home = Path(home or get_settings().home)
    stage = Stage(stage_name, home=home, keys=keys)
    store = Store(stage_name, home=home, keys=keys)
    done: list[Loaded] = []
    tables = store.tables()
    for batch in stage.received():
        if any(store.has(t, batch) for t in tables):
            continue
        def vault(part: Manifest, rows: pa.Table) -> None:
            _seal_vault(keys, stage_name, part, rows, home)

        manifest, table, kept, _ = pseudonymise(con, stage, batch, keys, store=store, vault=vault)
        rows, repeated = kept.store(store, batch)
        if repeated:
            log.warning("stage %s: batch %s (%s) repeats %d keys: the last row of each kept", stage_name, batch,
                        manifest.feed, repeated)
        done.append(Loaded(stage_name, table, batch, rows))
        log.info("stage %s: loaded batch %s (%s): %d rows into %s", stage_name, batch, manifest.feed, rows, table)
    return done


#: the rows of one store file of a batch (at least; a file closes with the part that reaches them): what the load
#: holds decoded at once besides one part. Each is one Parquet row group (store.ROW_GROUP rows at most).
FILE_ROWS = 128 * 1024


class Kept:
    """The rows a batch keeps, written as they come FILE_ROWS rows at a time, each as one Parquet file of the batch
    (compressed): to the store's :class:`matching.store.BatchWriter` as it is made, so that neither
    the batch's decoded rows nor its whole Parquet are ever in memory (without a writer, the files are kept in
    memory). To find a key the batch repeats, only a 64-bit hash of each row's key is kept (8 bytes a row)."""

    def __init__(self, table: str, writer: BatchWriter | None = None, rows: int = 0) -> None:
        self.table = table
        self.writer = writer
        self._files: list[bytes] = []  # without a writer
        self._hashes = np.empty(rows if table in KEYS else 0, np.uint64)  # rows: the batch's announced count
        self._schema: pa.Schema | None = None
        self._pending: list[pa.Table] = []  # parts not written yet: less than FILE_ROWS rows
        self._writing: Future[None] | None = None  # the file being written (_flush)
        self.num_rows = 0
        self.files = 0

    def add(self, part: pa.Table) -> None:
        if self.table in KEYS and part.num_rows:
            hashes = _key_hashes(self.table, part)
            if self.num_rows + len(hashes) > len(self._hashes):
                self._hashes = np.concatenate([self._hashes[:self.num_rows], hashes])
            else:
                self._hashes[self.num_rows:self.num_rows + len(hashes)] = hashes
        self.num_rows += part.num_rows
        if self._schema is not None and part.schema != self._schema:
            self._flush()  # parts whose columns' types differ: each in files of its own, read as their concatenation
        self._schema = part.schema
        self._pending.append(part)
        if sum(p.num_rows for p in self._pending) >= min(FILE_ROWS, ROW_GROUP):  # a file once it has FILE_ROWS rows
            self._flush()

    def _flush(self) -> None:
        """The pending parts made a file: encoded and given to the writer in a thread of its own while the caller
        makes the next part (with a writer), after the file before it is written — so at most one file is being
        written at a time, in order, and its error is raised by the next call that waits for it."""
        if not self._pending:
            return
        parts, self._pending = self._pending, []
        self.files += 1
        self.wait()
        if self.writer is None:
            self._write(parts)
        else:
            self._writing = _writer_thread().submit(self._write, parts)

    def _write(self, parts: list[pa.Table]) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.concat_tables(parts), buf, compression="zstd", row_group_size=ROW_GROUP)
        (self.writer.add if self.writer is not None else self._files.append)(buf.getvalue())

    def wait(self) -> None:
        """Until the file being written is written; its error, if it failed."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def abort(self) -> None:
        """Nothing of the batch stored: the file being written waited for (its error dropped), the writer's files
        removed."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001,S110 - the batch is given up: the error that stopped it is the one raised
            pass
        if self.writer is not None:
            self.writer.abort()

    def _written(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The files written so far, decoded one at a time."""
        self._flush()
        self.wait()
        plains = self.writer.written() if self.writer is not None else iter(self._files)
        for plain in plains:
            yield pq.read_table(io.BytesIO(plain), columns=columns)

    def rows(self) -> pa.Table:
        """Every kept row, decoded (the parts' rows in their order)."""
        tables = list(self._written())
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})

    def store(self, store: Store, batch: str) -> tuple[int, int]:
        """Write the rows to the store as ``<table>/<batch>``, one row per key (the last where a key repeats:
        matching.sql.one_per_key_in_batch); the rows written and the rows dropped. Without a repeated key (the
        rule: a contract's unique key quarantines repeats) the files written as they came are committed; with one,
        the batch is deduplicated whole and written as one file."""
        self._flush()
        self.wait()
        if self.files == 0:  # a batch without rows: one file of its columns
            buf = io.BytesIO()
            pq.write_table(self._schema.empty_table() if self._schema is not None else pa.table({}), buf)
            self.files = 1
            (self.writer.add if self.writer is not None else self._files.append)(buf.getvalue())
        if self._unique():
            writer = self.writer
            if writer is None:
                writer = store.batch_writer(self.table, batch)
                for plain in self._files:
                    writer.add(plain)
            elif (writer.store.dir, writer.table, writer.name) != (store.dir, self.table, batch):
                raise ValueError(f"kept rows of {writer.table}/{writer.name} stored as {self.table}/{batch}")
            writer.commit()
            return self.num_rows, 0
        rows, repeated = one_per_key_in_batch(self.table, self.rows())
        if self.writer is not None:
            self.writer.abort()
        store.write(self.table, batch, rows)
        return rows.num_rows, repeated

    def _unique(self) -> bool:
        """Whether no key repeats: the hashes sorted in place; the rows of a hash seen twice compared whole."""
        if self.table not in KEYS:
            return True
        hashes = self._hashes[:self.num_rows]
        hashes.sort()
        twice = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
        if not len(twice):
            return True
        cols = list(KEYS[self.table])
        suspects = [t.filter(pa.array(np.isin(_key_hashes(self.table, t), twice))) for t in self._written(cols)]
        return _unique(pa.concat_tables(suspects, promote_options="default"))


_WRITER: list[ThreadPoolExecutor] = []
_WRITER_MADE = threading.Lock()


def _writer_thread() -> ThreadPoolExecutor:
    """The one thread that encodes and writes the kept rows' files (Kept._flush): Parquet's encoding and the
    store's sealing run there while DuckDB makes the next part's rows."""
    with _WRITER_MADE:
        if not _WRITER:
            _WRITER.append(ThreadPoolExecutor(1, thread_name_prefix="fundx-kept"))
        return _WRITER[0]


_HASHING = threading.local()  # one DuckDB connection per thread for the key hashes: connecting costs ~19 ms


def _key_hashes(table: str, rows: pa.Table) -> np.ndarray:
    """A 64-bit hash of each row's key (matching.sql.KEYS), in the rows' order: DuckDB's hash of each key column
    and of its text reversed. DuckDB's hash of a string alone collides on the ledger's own keys (``PM`` + person +
    month: 480,000 of 5.85 million distinct payment ids shared a hash, and every such batch took Kept's exact and
    slow path); with the reversed text, none did. A collision costs time only: Kept._unique compares the keys of
    the rows whose hashes repeat."""
    con = getattr(_HASHING, "con", None)
    if con is None:
        con = _HASHING.con = duckdb.connect()
    con.register("keyed", rows.select(list(KEYS[table])))
    try:
        cols = ", ".join(f'"{c}", reverse(CAST("{c}" AS VARCHAR))' for c in KEYS[table])
        return con.sql(f"SELECT hash({cols}) AS h FROM keyed").fetchnumpy()["h"]  # noqa: S608 - known columns
    finally:
        con.unregister("keyed")


def _unique(keys: pa.Table) -> bool:
    return keys.group_by(keys.column_names, use_threads=False).aggregate([]).num_rows == keys.num_rows


def pseudonymise(con: duckdb.DuckDBPyConnection, stage: Stage, batch: str, keys: KeyStore, *,
                 store: Store | None = None,
                 vault: Callable[[Manifest, pa.Table], None] | None = None) -> tuple[Manifest, str, Kept, pa.Table | None]:
    """A received batch through DuckDB one part at a time (only one part's plain rows in memory): its manifest,
    its store table, the rows the stage keeps (pseudonymised, the parts' rows in their order, as Parquet files:
    written to ``store`` as they come when it is given, committed by :meth:`Kept.store`) and the vault's rows
    (token, identity number, name; distinct), or None for a feed without identity numbers. With ``vault``, each
    part's vault rows not in an earlier part are given to it as they come (with the part's manifest; the first
    part with rows always, even with none) and None is returned for them. ManifestError when the parts do not hold the rows
    the manifest announces (nothing is committed to the store then)."""
    at = received_at(stage, batch)
    manifest: Manifest | None = None
    table = vault_sql = ""
    kept: Kept | None = None
    vaults: list[pa.Table] = []
    rows_in = 0
    given = False
    try:
        for m, rows in open_parts(stage, batch, keys):
            if manifest is None:
                manifest = m
                plan = feed_plan(m.feed)
                table, vault_sql = plan.table, plan.vault_tokened or ""
                kept = Kept(table, store.batch_writer(table, batch) if store is not None else None, m.rows)
                if vault_sql:  # the vault rows given so far, a token and a hash of the rest each (DuckDB's memory):
                    # a row is given once, however many parts hold it
                    con.execute("CREATE OR REPLACE TEMP TABLE vault_seen (person BLOB, variant UBIGINT)")
            rows_in += rows.num_rows
            con.register("src", in_batches(with_tokens(con, rows, plan)))  # each distinct value tokenised once
            try:
                if vault_sql and rows.num_rows:
                    new = con.sql(f"SELECT * FROM ({vault_sql}) v WHERE NOT EXISTS (SELECT 1 FROM vault_seen s "  # noqa: S608
                                  "WHERE s.person = v.person AND s.variant = hash(v.id_number, v.name))").to_arrow_table()
                    con.register("vault_new", new)
                    con.execute("INSERT INTO vault_seen SELECT person, hash(id_number, name) FROM vault_new")
                    con.unregister("vault_new")
                    if vault is None:
                        vaults.append(new)
                    elif new.num_rows or not given:  # a batch with rows and identity numbers: its vault, even empty
                        vault(m, new)
                        given = True
                # S608: batch is a checked name (letters, digits, '.', '_', '-') its signed manifest confirms;
                # received_at is the time in the stage's own receipt
                assert kept is not None
                kept.add(con.sql(f"SELECT *, '{batch}' AS batch, TIMESTAMPTZ '{at}' AS received_at "  # noqa: S608
                                 f"FROM ({plan.tokened})").to_arrow_table())
            finally:
                con.unregister("src")
            del rows
        assert manifest is not None and kept is not None
        kept.wait()  # the last file written (or its error raised) before the batch is called loaded
        if rows_in != manifest.rows:
            raise ManifestError(f"batch {batch}: the parts hold {rows_in} rows, the manifest announces {manifest.rows}")
    except BaseException as exc:
        if kept is not None:
            kept.abort()
        if isinstance(exc, duckdb.OutOfMemoryException):  # nothing spills while identity numbers are in DuckDB
            raise past_memory(con, f"batch {batch}: loading it",
                              feed=manifest.feed if manifest is not None else None) from None
        raise
    finally:
        if vault_sql:
            con.execute("DROP TABLE IF EXISTS vault_seen")
    if not vault_sql or vault is not None or not vaults:
        return manifest, table, kept, None
    return manifest, table, kept, pa.concat_tables(vaults, promote_options="default")
