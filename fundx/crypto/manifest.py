"""The manifest a sealed part carries: what the part is, bound into its signature.

It is a signed attribute of the part's SignedData (:mod:`fundx.crypto.seal`) rather than part of the
content: the signature binds it to the payload, so a part cannot be replayed to another recipient or
night, while ``openssl cms -verify`` still outputs the Parquet file untouched. Opening a part checks
it against what the opener expects (:func:`fundx.crypto.opening.open_sealed`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

#: manifest format written into the signed attribute
MANIFEST_FORMAT = "fundx.manifest/1"


@dataclass(frozen=True)
class Manifest:
    """What a sealed part is: bound into its signature so it cannot be replayed elsewhere.

    ``part`` counts from 1 to ``parts``; ``content_digest`` is the batch's content digest
    (e.g. ``sha256:<hex>``, see :func:`content_digest`); ``recipient`` is the stage's name;
    times are ISO 8601 with an offset.
    """

    batch_id: str
    feed: str
    window_start: str
    window_end: str
    part: int
    parts: int
    rows: int
    content_digest: str
    contract_version: str
    recipient: str
    created_at: str

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            wanted = int if f.type in ("int", int) else str
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise TypeError(f"manifest {f.name} must be {wanted.__name__}, not {type(value).__name__}")
        if not 1 <= self.part <= self.parts:
            raise ValueError(f"manifest part {self.part} is not within 1..{self.parts}")
        if self.rows < 0:
            raise ValueError("manifest rows must not be negative")

    def to_json(self) -> str:
        """The canonical JSON written into the signed attribute."""
        return json.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """The manifest written by :meth:`to_json`; ValueError if it is not exactly that."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("format", None) != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"manifest fields differ: {sorted(set(data) ^ names)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


MANIFEST_FIELDS = frozenset(f.name for f in fields(Manifest))


def content_digest(data: bytes | memoryview) -> str:
    """The digest of some content as written in manifests: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
