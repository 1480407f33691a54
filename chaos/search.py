"""The canary and secret search after a chaos night: every byte the exchange left, searched for what must not be there.

The needles are the canary identity number planted in every feed and every secret the exchange held
(tokens, client secrets, API keys, database passwords, private-key bodies). Each is searched in the
forms a leak would take: ASCII/UTF-8 (also GB18030 and GBK, whose digits and Latin letters are the
same bytes), UTF-16LE/BE (Windows tools, some SQLite text), and base64 at its three alignments
(Prefect's default result serializer, pickled exceptions in its storage). A masked identity number
(330106********9997) does not match. A hit is reported by file and needle name, never by its bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


def forms(secret: str | bytes) -> list[bytes]:
    """The byte forms of ``secret`` a leak may take (see the module docstring); bytes (key material) as
    they are and in base64 — which also finds them inside a PEM file."""
    raw = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    found = [raw] if isinstance(secret, bytes) else [raw, secret.encode("utf-16-le"), secret.encode("utf-16-be")]
    for shift in range(3):  # base64 of the secret at each alignment, without the bytes its neighbours change
        encoded = base64.b64encode(b"\0" * shift + raw)
        # the characters whose 6 bits all come from the secret: the same wherever it sits in a stream
        piece = encoded[-(-8 * shift // 6):8 * (shift + len(raw)) // 6]
        if len(piece) >= 12:
            found.append(piece)
    return [f for f in dict.fromkeys(found) if f]


@dataclass(frozen=True)
class Needle:
    """One thing to search for; ``outside`` folders are not searched for it (key material in the key store)."""

    name: str
    value: str | bytes = field(repr=False)
    outside: tuple[Path, ...] = ()


@dataclass
class Found:
    """What the search saw: files and bytes scanned, and the hits (file, needle name)."""

    files: int = 0
    bytes: int = 0
    hits: list[tuple[str, str]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)


def search(roots: Iterable[Path], needles: list[Needle], *, exclude: Iterable[Path] = ()) -> Found:
    """Every regular file under ``roots`` (not under ``exclude``), read in 1 MiB chunks that overlap
    by the longest needle, searched for every form of every needle."""
    excluded = [Path(p).resolve() for p in exclude]
    patterns = [(n, f) for n in needles for f in forms(n.value)]
    overlap = max((len(f) for _, f in patterns), default=1) - 1
    found = Found()
    seen: set[Path] = set()
    for root in roots:
        root = Path(root).resolve()
        if not root.exists():
            continue
        found.roots.append(str(root))
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_symlink() or not path.is_file() or path in seen:
                continue
            if any(path.is_relative_to(e) for e in excluded):
                continue
            seen.add(path)
            active = [(n, f) for n, f in patterns if not any(path.is_relative_to(o) for o in n.outside)]
            names = _scan(path, active, overlap, found)
            found.hits += [(str(path), name) for name in sorted(names)]
    return found


def _scan(path: Path, patterns: list[tuple[Needle, bytes]], overlap: int, found: Found) -> set[str]:
    names: set[str] = set()
    try:
        with open(path, "rb") as handle:
            tail = b""
            found.files += 1
            while chunk := handle.read(CHUNK):
                found.bytes += len(chunk)
                data = tail + chunk
                names.update(n.name for n, f in patterns if f in data)
                tail = data[-overlap:] if overlap else b""
    except OSError:  # a file removed while we looked (a log rotated): nothing to find in it
        pass
    return names
