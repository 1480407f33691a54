"""The CMS (RFC 5652) pieces of a sealed part: object identifiers, DER headers and a BER reader.

The small structures (RecipientInfos, AlgorithmIdentifiers, SignerInfos, certificates) are built and
parsed with asn1crypto. Only the few definite-length headers around the payload are encoded here,
because the payload is streamed through AES-GCM and must never be copied into an asn1crypto object;
the tests check that a whole sealed part equals asn1crypto's own DER re-encoding.

The reader (:class:`Ber`) walks DER and BER (indefinite lengths, constructed OCTET STRINGs, as
``openssl cms -stream`` writes them) over a ``memoryview``, so that opening a part does not copy it once per
nesting level as ``asn1crypto.core.load`` would. It only finds where things are; every value it
finds that is not the payload is handed to asn1crypto or cryptography to be understood.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from asn1crypto import algos, cms, core

#: ContentInfo content types (RFC 5652, RFC 5083)
ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"

#: The signed attribute that carries a part's manifest (JSON in a UTF8String).
#: An OID under 2.25 is derived from a UUID (ITU-T X.667) and needs no registration; openssl prints
#: it as a number and still verifies the signature over it.
ID_FUNDX_MANIFEST = "2.25.35898597010921414710153247530387269098"


class GcmParameters(core.Sequence):
    """GCMParameters of RFC 5084: the nonce and the tag length (default 12, fundx writes 16)."""

    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class SetOfUTF8String(core.SetOf):
    """The values of the manifest attribute: exactly one UTF8String."""

    _child_spec = core.UTF8String


# asn1crypto resolves attribute values by name; teach it the manifest attribute (its documented
# extension point) so that SignerInfo.signed_attrs parse and build it like the standard ones.
cms.CMSAttributeType._map[ID_FUNDX_MANIFEST] = "fundx_manifest"
cms.CMSAttributeType._reverse_map = None  # rebuilt lazily from _map
cms.CMSAttribute._oid_specs["fundx_manifest"] = SetOfUTF8String


# --- writing -------------------------------------------------------------------------------------

#: identifier octets of the few headers written by hand
SEQUENCE = 0x30
OCTET_STRING = 0x04
CONTEXT_0_CONSTRUCTED = 0xA0
CONTEXT_0_PRIMITIVE = 0x80


def header(identifier: int, length: int) -> bytes:
    """The DER identifier and length octets of a value of ``length`` bytes (low tag numbers only)."""
    if length < 0x80:
        return bytes((identifier, length))
    size = (length.bit_length() + 7) // 8
    return bytes((identifier, 0x80 | size)) + length.to_bytes(size, "big")


def oid(dotted: str) -> bytes:
    """The DER of an OBJECT IDENTIFIER."""
    return core.ObjectIdentifier(dotted).dump()


def gcm_algorithm(nonce: bytes, tag_length: int = 16) -> algos.EncryptionAlgorithm:
    """The contentEncryptionAlgorithm of AES-256-GCM with this nonce."""
    return algos.EncryptionAlgorithm(
        {
            "algorithm": "aes256_gcm",
            "parameters": GcmParameters({"aes_nonce": nonce, "aes_icvlen": tag_length}),
        }
    )


# --- reading -------------------------------------------------------------------------------------


class MalformedError(ValueError):
    """The bytes are not the BER/DER structure expected (damaged, truncated or not CMS at all)."""


UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = range(4)
_MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Tlv:
    """Where one BER value lies in a buffer: its tag, and the offsets of its header, body and end."""

    cls: int
    constructed: bool
    tag: int
    start: int
    body: int
    end: int  # after the value, including an end-of-contents marker
    indefinite: bool

    @property
    def body_end(self) -> int:
        return self.end - 2 if self.indefinite else self.end

    def is_(self, cls: int, tag: int) -> bool:
        return self.cls == cls and self.tag == tag


class Ber:
    """BER or DER bytes being read, with the ends of indefinite-length values found so far.

    Finding where an indefinite-length value ends means walking all of it; remembering the ends
    keeps a walk down openssl's -stream output (thousands of 4 KiB segments) linear.
    """

    def __init__(self, data: bytes | bytearray | memoryview):
        self.view = memoryview(data).cast("B")
        self.nbytes = self.view.nbytes
        self.ends: dict[int, int] = {}

    def __getitem__(self, index):
        return self.view[index]


def read_tlv(ber: Ber, pos: int, limit: int, depth: int = 0) -> Tlv:
    """The value that starts at ``pos`` and must end by ``limit``."""
    buf = ber.view
    if depth > _MAX_DEPTH:
        raise MalformedError("nested too deeply")
    if pos + 2 > limit:
        raise MalformedError("truncated header")
    first = buf[pos]
    cls, constructed, tag = first >> 6, bool(first & 0x20), first & 0x1F
    p = pos + 1
    if tag == 0x1F:  # high tag number: base-128 digits
        tag = 0
        while True:
            if p >= limit:
                raise MalformedError("truncated tag")
            octet = buf[p]
            p += 1
            tag = (tag << 7) | (octet & 0x7F)
            if not octet & 0x80:
                break
            if tag > 1 << 28:
                raise MalformedError("tag number too large")
    if p >= limit:
        raise MalformedError("truncated length")
    octet = buf[p]
    p += 1
    if octet == 0x80:
        if not constructed:
            raise MalformedError("indefinite length on a primitive value")
        end = ber.ends.get(pos)
        if end is None:
            q = p
            while True:
                if q + 2 > limit:
                    raise MalformedError("missing end-of-contents")
                if buf[q] == 0 and buf[q + 1] == 0:
                    break
                q = read_tlv(ber, q, limit, depth + 1).end
            end = ber.ends[pos] = q + 2
        if end > limit:
            raise MalformedError("value runs past its container")
        return Tlv(cls, constructed, tag, pos, p, end, True)
    if octet & 0x80:
        size = octet & 0x7F
        if size > 8 or p + size > limit:
            raise MalformedError("bad length")
        length = int.from_bytes(buf[p : p + size], "big")
        p += size
    else:
        length = octet
    if p + length > limit:
        raise MalformedError("value runs past its container")
    return Tlv(cls, constructed, tag, pos, p, p + length, False)


def children(buf: Ber, parent: Tlv) -> list[Tlv]:
    """The values inside a constructed value, in order."""
    if not parent.constructed:
        raise MalformedError("expected a constructed value")
    found, pos, end = [], parent.body, parent.body_end
    while pos < end:
        child = read_tlv(buf, pos, end)
        found.append(child)
        pos = child.end
    return found


def octets(buf: Ber, value: Tlv, depth: int = 0) -> Iterator[memoryview]:
    """The content of an OCTET STRING (primitive, or constructed from segments as BER allows)."""
    if not value.constructed:
        yield buf.view[value.body : value.end]
        return
    if depth > _MAX_DEPTH:
        raise MalformedError("nested too deeply")
    for segment in children(buf, value):
        if not segment.is_(UNIVERSAL, 4):
            raise MalformedError("constructed OCTET STRING holds something else")
        yield from octets(buf, segment, depth + 1)


def oid_at(buf: Ber, value: Tlv) -> str:
    """The dotted form of an OBJECT IDENTIFIER value."""
    if not value.is_(UNIVERSAL, 6) or value.constructed:
        raise MalformedError("expected an OBJECT IDENTIFIER")
    return core.ObjectIdentifier.load(bytes(buf.view[value.start : value.end])).dotted


def expect(value: Tlv, cls: int, tag: int, what: str) -> Tlv:
    """``value`` itself, if it has the tag of ``what``; MalformedError otherwise."""
    if not value.is_(cls, tag):
        raise MalformedError(f"expected {what}")
    return value


def der(buf: Ber, value: Tlv) -> bytes:
    """A copy of one (small) value with its header, to hand to asn1crypto."""
    return bytes(buf.view[value.start : value.end])
