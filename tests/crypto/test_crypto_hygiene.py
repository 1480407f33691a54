"""Crypto hygiene, as SECURITY.md claims it: key files private, no AES-GCM nonce or content key used
twice, certificates refused for every reason they should be, the audit chain catching edits,
deletions and swaps, and sealed parts refused (with the right error type) when altered, cut short
or re-addressed. Fast: one small development PKI for the module (about 3 RSA-3072 keys)."""

from __future__ import annotations

import io
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from asn1crypto import algos
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from testkit import Pki
from typer.testing import CliRunner

from fundx.core.errors import (
    CertificateError,
    ConfigurationError,
    ManifestError,
    SealError,
    TamperedError,
    UnknownSignerError,
    WrongRecipientError,
)
from fundx.core.timeutil import Window
from fundx.crypto import cms
from fundx.crypto import opening as sealing
from fundx.crypto.certificates import validate_certificate
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.manifest import Manifest, content_digest
from fundx.crypto.opening import open_sealed
from fundx.crypto.pki import (
    add_stage_certificate,
    init_keys,
    issue_certificate,
    make_ca,
    make_crl,
    new_private_key,
    retire_stage_certificate,
)
from fundx.crypto.seal import seal
from fundx.ledger import Ledger
from fundx.ledger.schema import audit
from fundx.wire.inbox import LocalInbox, seal_parts

DEATH, CUSTODY = "death_matching", "custody_matching"
NOW = lambda: datetime.now(UTC)  # noqa: E731


@pytest.fixture(scope="module")
def payload() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id_number": ["11010519491231002X"], "amount": [1]}), sink)
    return sink.getvalue()


def _manifest(payload: bytes, **changes) -> Manifest:
    base = Manifest(batch_id="police.deaths-20261122-0001", feed="police.deaths",
                    window_start="2026-11-21T00:00:00+08:00", window_end="2026-11-22T00:00:00+08:00",
                    part=1, parts=1, rows=1, content_digest=content_digest(payload), contract_version="1.0.0",
                    recipient=DEATH, created_at="2026-11-22T02:00:05+08:00")
    return replace(base, **changes)


def _seal(pki: Pki, payload: bytes, manifest: Manifest | None = None, *, signer=None, to=None) -> bytes:
    key, cert = signer or (pki.signer_key, pki.signer_cert)
    return seal(payload, manifest or _manifest(payload), signer_key=key, signer_cert=cert,
                recipients=to or [pki.stage(DEATH)[1]])


def _open(pki: Pki, data: bytes, *, stage=None, crl=None, **expect):
    key, cert = stage or pki.stage(DEATH)
    return open_sealed(data, recipient_key=key, recipient_cert=cert, trusted_ca=pki.ca,
                       crl=pki.crl if crl is None else crl, expect=expect or None)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- (a) key files ---------------------------------------------------------------------------------


def test_every_private_key_and_the_match_key_is_0600_in_0700_folders(tmp_path):
    paths = init_keys(tmp_path / "home", (DEATH,))
    add_stage_certificate(DEATH, "next", home=tmp_path / "home")  # rotation ...
    retire_stage_certificate(DEATH, home=tmp_path / "home")       # ... and retirement keep the modes
    keys = sorted(paths.dir.rglob("*.key"))
    names = {p.relative_to(paths.dir).as_posix() for p in keys}
    assert {"ca.key", "exchange.key", f"stages/{DEATH}.next.key", f"signers/{DEATH}.key", "office/match.key"} <= names
    assert any(n.startswith(f"retired/{DEATH}.") for n in names)
    assert {p.relative_to(paths.dir).as_posix(): oct(_mode(p)) for p in keys} == dict.fromkeys(names, "0o600")
    folders = [paths.dir, paths.stages_dir, paths.signers_dir, paths.retired_dir, paths.match_key.parent]
    assert {str(f): oct(_mode(f)) for f in folders} == {str(f): "0o700" for f in folders}
    assert paths.match_key.stat().st_size == 32
    assert not list(paths.dir.rglob(".*.tmp")), "no temporary file is left behind"
    # running it again (idempotent) changes no mode
    init_keys(tmp_path / "home", (DEATH,))
    assert all(_mode(p) == 0o600 for p in paths.dir.rglob("*.key"))


# --- (b) nonces and content keys -------------------------------------------------------------------


def _nonce_and_key(pki: Pki, data: bytes) -> tuple[bytes, bytes]:
    """The AES-GCM nonce (GCMParameters of the contentEncryptionAlgorithm) and the content key of a part."""
    buf = cms.Ber(data)
    envelope = sealing._parse_envelope(buf, "test")
    algorithm = algos.EncryptionAlgorithm.load(envelope.algorithm)
    assert algorithm["algorithm"].native == "aes256_gcm"
    nonce = cms.GcmParameters.load(algorithm["parameters"].dump())["aes_nonce"].native
    content_key = sealing._content_key(envelope, pki.stage(DEATH)[0], pki.stage(DEATH)[1], "test")
    assert len(nonce) == 12 and len(content_key) == 32
    return nonce, content_key


def test_no_nonce_or_content_key_is_used_twice_over_many_parts(pki, payload, tmp_path):
    manifest = _manifest(payload)
    parts = [_seal(pki, payload, manifest) for _ in range(150)]  # the same payload and manifest each time
    inbox = LocalInbox(tmp_path / "inboxes")
    window = Window(datetime(2026, 11, 21, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
    files = seal_parts(inbox, DEATH, [payload] * 50, batch_id="police.deaths-20261122-0002", feed="police.deaths",
                       window=window, digest=content_digest(payload), rows=50, contract_version="1.0.0",
                       created_at="2026-11-22T02:00:05+08:00", signer_key=pki.signer_key,
                       signer_cert=pki.signer_cert, recipients=[pki.stage(DEATH)[1]])
    folder = Path(inbox.where(DEATH, "police.deaths-20261122-0002"))
    assert _mode(folder) == 0o700 and all(_mode(folder / f.name) == 0o600 for f in files)
    parts += [(folder / f.name).read_bytes() for f in files]

    pairs = [_nonce_and_key(pki, p) for p in parts]
    nonces, keys = [n for n, _ in pairs], [k for _, k in pairs]
    assert len(parts) == 200
    assert len(set(nonces)) == len(nonces), "an AES-GCM nonce was used twice"
    assert len(set(keys)) == len(keys), "a content-encryption key was used twice"
    assert len(set(nonces) | set(keys)) == len(nonces) + len(keys)
    assert len(set(parts)) == len(parts)
    assert _open(pki, parts[0]).payload == payload  # and they still open


def test_store_files_never_repeat_a_nonce(pki, tmp_path):
    from matching.store import MAGIC, Store

    store = Store(DEATH, home=tmp_path / "home", keys=pki.store)
    table = pa.table({"person": [1, 2], "amount": [10, 20]})
    nonces, blobs = [], []
    for i in range(100):  # the same table and name rewritten, and new names
        path = store.write("deaths", "batch-same" if i % 2 else f"batch-{i:04d}", table)
        data = path.read_bytes()
        assert data.startswith(MAGIC) and _mode(path) == 0o600
        nonces.append(data[len(MAGIC):len(MAGIC) + 12])
        blobs.append(data)
    assert len(set(nonces)) == len(nonces), "a store nonce was used twice under the one store key"
    assert len(set(blobs)) == len(blobs)
    assert _mode(store.key_file) == 0o600 and _mode(store.dir) == 0o700
    assert store.read_file("deaths", "batch-same").equals(table)
    # the associated data binds stage/table/name: the same file under another name does not open
    moved = store._path("deaths", "batch-moved")
    moved.write_bytes(store._path("deaths", "batch-0000").read_bytes())
    with pytest.raises(TamperedError):
        store.read_file("deaths", "batch-moved")


# --- (c) certificates ------------------------------------------------------------------------------


def _leaf(pki: Pki, usage: str = "signing", *, ca=None, not_before=None, days: int = 30, name: str = "fundx exchange"):
    ca_key, ca_cert = ca or (pki.ca_key, pki.ca)
    key = new_private_key(usage)  # type: ignore[arg-type]
    cert = issue_certificate(ca_key, ca_cert, common_name=name, usage=usage,  # type: ignore[arg-type]
                             public_key=key.public_key(), days=days, not_before=not_before)
    return key, cert


def _crl(pki: Pki, *, last: datetime, next_: datetime, ca=None) -> x509.CertificateRevocationList:
    ca_key, ca_cert = ca or (pki.ca_key, pki.ca)
    return (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
            .last_update(last).next_update(next_).sign(ca_key, hashes.SHA256()))


@pytest.fixture(scope="module")
def bad(pki):
    """Signing certificates (ECDSA, cheap) that must each be refused, and the CRLs that refuse."""
    other_ca = make_ca("another CA")
    expired = _leaf(pki, not_before=NOW() - timedelta(days=10), days=1)
    future = _leaf(pki, not_before=NOW() + timedelta(days=1))
    foreign = _leaf(pki, ca=other_ca)
    revoked = _leaf(pki)
    return {
        "expired": expired, "not_yet_valid": future, "other_ca": foreign, "revoked": revoked,
        "other_ca_pair": other_ca,
        "crl_revoking": make_crl(pki.ca_key, pki.ca, [(revoked[1].serial_number, NOW() - timedelta(minutes=1))]),
        "crl_stale": _crl(pki, last=NOW() - timedelta(days=10), next_=NOW() - timedelta(days=1)),
        "crl_foreign": _crl(pki, last=NOW() - timedelta(days=1), next_=NOW() + timedelta(days=1), ca=other_ca),
    }


def test_the_good_certificates_pass(pki):
    validate_certificate(pki.signer_cert, pki.ca, pki.crl, usage="signing")
    validate_certificate(pki.stage(DEATH)[1], pki.ca, pki.crl, usage="encryption")


@pytest.mark.parametrize(("case", "usage", "crl", "reason"), [
    ("expired", "signing", None, "expired on"),
    ("not_yet_valid", "signing", None, "not valid before"),
    ("other_ca", "signing", None, "not issued by the trusted CA"),
    ("revoked", "signing", "crl_revoking", "revoked on"),
    ("signing_cert", "encryption", None, "does not allow key transport"),
    ("encryption_cert", "signing", None, "does not allow signing"),
    ("ca_cert", "signing", None, "is a CA certificate"),
    ("signing_cert", "signing", "crl_stale", "CRL is out of date"),
    ("signing_cert", "signing", "crl_foreign", "CRL is not signed by the trusted CA"),
])
def test_validate_certificate_refuses(pki, bad, case, usage, crl, reason):
    cert = {"signing_cert": pki.signer_cert, "encryption_cert": pki.stage(DEATH)[1], "ca_cert": pki.ca}.get(case)
    cert = cert or bad[case][1]
    with pytest.raises(CertificateError, match=reason):
        validate_certificate(cert, pki.ca, bad[crl] if crl else pki.crl, usage=usage)


def test_the_validity_period_is_checked_at_the_given_time(pki):
    later = pki.signer_cert.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(CertificateError):  # the CA itself has expired by then too: refused either way
        validate_certificate(pki.signer_cert, pki.ca, None, usage="signing", at=later)
    short = _crl(pki, last=NOW() - timedelta(minutes=5), next_=NOW() + timedelta(hours=1))
    validate_certificate(pki.signer_cert, pki.ca, short, usage="signing")
    with pytest.raises(CertificateError, match="CRL is out of date"):
        validate_certificate(pki.signer_cert, pki.ca, short, usage="signing", at=NOW() + timedelta(hours=2))


@pytest.mark.parametrize(("case", "crl", "error", "reason"), [
    ("expired", None, CertificateError, "expired on"),
    ("not_yet_valid", None, CertificateError, "not valid before"),
    ("other_ca", None, UnknownSignerError, "did not issue"),
    ("revoked", "crl_revoking", CertificateError, "revoked on"),
    ("exchange", "crl_stale", CertificateError, "CRL is out of date"),
    ("encryption_cert", None, CertificateError, "does not allow signing"),
])
def test_open_sealed_refuses_a_part_from_the_wrong_signer(pki, bad, payload, case, crl, error, reason):
    signer = {"exchange": (pki.signer_key, pki.signer_cert), "encryption_cert": pki.stage(DEATH)}.get(case) or bad[case]
    data = _seal(pki, payload, signer=signer)
    with pytest.raises(error, match=reason) as refused:
        _open(pki, data, crl=bad[crl] if crl else None)
    assert "11010519491231002X" not in str(refused.value)


def test_a_signing_certificate_is_never_encrypted_to(pki, payload, tmp_path):
    """A stage 'certificate' that is really a signing certificate: the key store will not hand it out,
    and sealing to it directly fails (ECDSA has no key transport)."""
    pem = tmp_path / "stage.pem"
    pem.write_bytes(pki.signer_cert.public_bytes(serialization.Encoding.PEM))
    store = KeyStore(KeySettings(dir=pki.paths.dir, stage_certs={DEATH: str(pem)}))
    with pytest.raises(CertificateError, match="does not allow key transport"):
        store.recipient_certificates(DEATH)
    with pytest.raises(ConfigurationError, match="RSA"):
        _seal(pki, payload, to=[pki.signer_cert])


def test_an_expired_stage_certificate_is_not_encrypted_to(pki, tmp_path):
    expired = _leaf(pki, "encryption", name=DEATH, not_before=NOW() - timedelta(days=10), days=1)[1]
    pem = tmp_path / "stage.pem"
    pem.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    store = KeyStore(KeySettings(dir=pki.paths.dir, stage_certs={DEATH: str(pem)}))
    with pytest.raises(CertificateError, match="no usable encryption certificate.*expired"):
        store.recipient_certificates(DEATH)


# --- (d) the audit chain ---------------------------------------------------------------------------


@pytest.fixture
def chain(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    for i in range(1, 6):
        ledger.log_event("batch.delivered", f"police.deaths-2026112{i}-0001", {"rows": i * 100, "parts": 1})
    assert ledger.verify_audit().ok and ledger.verify_audit().entries == 5
    yield ledger, url
    ledger.dispose()


def _tamper(ledger: Ledger, *statements: str) -> None:
    with ledger.transaction() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


_COLUMNS = "at, actor, action, subject, details, prev_hash, hash"


@pytest.mark.parametrize(("statements", "bad_seq"), [
    (["UPDATE audit SET details = '{\"parts\":1,\"rows\":999}' WHERE seq = 3"], 3),
    (["UPDATE audit SET actor = 'someone else' WHERE seq = 1"], 1),
    (["DELETE FROM audit WHERE seq = 3"], 4),
    (["DELETE FROM audit WHERE seq = 1"], 2),
    (["DELETE FROM audit WHERE seq = 5"], 5),  # from the end: only the head notices
    # two entries swapped: their sequence numbers exchanged ...
    (["UPDATE audit SET seq = -2 WHERE seq = 2", "UPDATE audit SET seq = 2 WHERE seq = 3",
      "UPDATE audit SET seq = 3 WHERE seq = -2"], 2),
    # ... or their contents exchanged under the same numbers
    ([f"CREATE TEMP TABLE t AS SELECT seq, {_COLUMNS} FROM audit WHERE seq IN (2, 4)",
      *[f"UPDATE audit SET {c} = (SELECT {c} FROM t WHERE t.seq = 6 - audit.seq) WHERE seq IN (2, 4)"
        for c in _COLUMNS.split(", ")]], 2),
])
def test_the_audit_chain_detects_tampering(chain, statements, bad_seq):
    ledger, _url = chain
    _tamper(ledger, *statements)
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == bad_seq, str(verdict)


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link(chain):
    from fundx.ledger.audit import Entry

    ledger, _ = chain
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(audit).where(audit.c.seq == 3)).mappings().one()
    edited = Entry.new(seq=3, at=row["at"], actor=row["actor"], action=row["action"], subject=row["subject"],
                       details={"parts": 1, "rows": 1}, prev_hash=row["prev_hash"])
    with ledger.transaction() as conn:
        conn.execute(audit.update().where(audit.c.seq == 3).values(details=edited.details, hash=edited.hash))
    verdict = ledger.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 4 and "does not chain" in verdict.problem


def test_fundx_audit_verify_exits_1_on_a_tampered_chain(chain, monkeypatch):
    from fundx.cli import app
    from fundx.core.settings import reload_settings

    ledger, url = chain
    monkeypatch.setenv("FUNDX_LEDGER_URL", url)
    reload_settings()
    try:
        runner = CliRunner()
        assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
        _tamper(ledger, "DELETE FROM audit WHERE seq = 2")
        broken = runner.invoke(app, ["audit", "verify"])
        assert broken.exit_code == 1 and "entry 3" in broken.output
    finally:
        monkeypatch.undo()
        reload_settings()


# --- (e) altered, truncated, re-addressed parts ----------------------------------------------------


@pytest.fixture(scope="module")
def part(pki, payload) -> bytes:
    data = _seal(pki, payload)
    assert _open(pki, data, recipient=DEATH, batch_id="police.deaths-20261122-0001").payload == payload
    return data


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def test_one_byte_altered_in_the_ciphertext_or_tag_is_tampering(pki, part):
    for at in (len(part) // 2, len(part) - 200, len(part) - 1, len(part) - 16):  # ciphertext ... tag
        with pytest.raises(TamperedError, match="authentication tag"):
            _open(pki, _flip(part, at))


def test_no_single_byte_change_anywhere_opens(pki, part):
    """Every 13th byte of the part flipped in turn: each is refused as a SealError, none opens."""
    kinds = set()
    for at in range(0, len(part), 13):
        with pytest.raises(SealError) as refused:
            _open(pki, _flip(part, at))
        kinds.add(type(refused.value).__name__)
    assert "TamperedError" in kinds


@pytest.mark.parametrize("cut", [1, 16, 17, 100, "half", "head"])
def test_a_truncated_part_is_refused(pki, part, cut):
    size = {"half": len(part) // 2, "head": 10}.get(cut, len(part) - cut if isinstance(cut, int) else 0)
    with pytest.raises(TamperedError):
        _open(pki, part[:size])


def test_bytes_appended_to_a_part_are_refused(pki, part):
    with pytest.raises(TamperedError, match="bytes after the end"):
        _open(pki, part + b"\x00")


def test_a_part_for_another_stage_does_not_open(pki, part):
    with pytest.raises(WrongRecipientError):
        _open(pki, part, stage=pki.stage(CUSTODY))


def test_a_part_re_addressed_to_another_stage_is_refused(pki, payload):
    """The signed content of a part for death_matching, encrypted to custody_matching instead (what
    someone who could open one stage's part and re-encrypt it would make): the signed manifest still
    names death_matching, so custody_matching refuses it."""
    readdressed = _seal(pki, payload, _manifest(payload, recipient=DEATH), to=[pki.stage(CUSTODY)[1]])
    with pytest.raises(ManifestError, match="sealed for stage 'death_matching', not 'custody_matching'"):
        _open(pki, readdressed, stage=pki.stage(CUSTODY))
    with pytest.raises(ManifestError, match="batch_id"):  # and a part replayed under another batch or night
        _open(pki, _seal(pki, payload), batch_id="police.deaths-20261123-0001")


def test_the_vault_refuses_a_file_not_sealed_by_a_matching_stage(tmp_path):
    """Any CA-issued signer verifies; the investigators' reader accepts the matching stages' only."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fundx.core.errors import UnknownSignerError
    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.manifest import Manifest
    from fundx.crypto.pki import init_keys
    from fundx.crypto.seal import seal
    from matching.run import read_vault

    home = tmp_path / "home"
    init_keys(home)
    keys = KeyStore(KeySettings(dir=home / "keys"))
    buf = io.BytesIO()
    pq.write_table(pa.table({"person": [b"t" * 16], "id_number": ["x"], "name": ["y"]}), buf)
    manifest = Manifest(batch_id="b", feed="f", window_start="s", window_end="e", part=1, parts=1, rows=1,
                        content_digest="sha256:" + "0" * 64, contract_version="1", recipient="investigators",
                        created_at="2026-11-23T00:00:00+00:00")
    key, cert = keys.exchange_signer()  # a valid signer of the CA, but not a matching stage
    folder = home / "stages" / "death_matching" / "vault"
    folder.mkdir(parents=True)
    (folder / "planted.p7m").write_bytes(seal(buf.getvalue(), manifest, signer_key=key, signer_cert=cert,
                                               recipients=keys.recipient_certificates("investigators")))
    with pytest.raises(UnknownSignerError, match="planted.p7m"):
        read_vault(keys, home, {b"t" * 16})
