"""Helpers shared by the sealing tests (a uniquely named module: every test folder has a conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fundx.crypto.certificates import PrivateKey
from fundx.crypto.keys import KeyPaths, KeySettings, KeyStore
from fundx.crypto.pki import init_keys

#: an identity number that must never show up in an error message
MARKER_ID = "11010519491231002X"


@dataclass(frozen=True)
class Pki:
    """A development PKI made by init_keys, with everything already loaded."""

    paths: KeyPaths
    store: KeyStore
    ca: x509.Certificate
    ca_key: PrivateKey
    signer_key: PrivateKey
    signer_cert: x509.Certificate
    _stages: dict = field(default_factory=dict)

    def stage(self, name: str) -> tuple[PrivateKey, x509.Certificate]:
        """The stage's first key and certificate (loaded once: RSA key loading checks the key, slowly)."""
        if name not in self._stages:
            self._stages[name] = self.store.stage_keys(name)[0]
        return self._stages[name]


def load_key(path: Path) -> PrivateKey:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)  # type: ignore[return-value]


def make_pki(home: Path, stages=("death_matching", "custody_matching")) -> Pki:
    paths = init_keys(home, stages)
    store = KeyStore(KeySettings(dir=paths.dir))
    key, cert = store.exchange_signer()
    return Pki(paths, store, store.ca(), load_key(paths.ca_key), key, cert)
