"""Sealing speed and peak memory, next to raw AES-GCM on the same bytes in the same run.

Scenarios (each measurement in its own Python process, so that ru_maxrss is its own):
- one part of ``size`` bytes: ``seal()`` (DER bytes out), ``seal_into()`` a discarding stream (the path
  a file or bucket write takes, without the disk) and ``open_sealed()``; baselines on the same bytes:
  ``AESGCM.encrypt`` in one call, ``Cipher(AES, GCM)`` fed 1 MiB chunks (the primitive inside
  ``seal``) and SHA-256 (sealing reads the payload twice: hash, then encrypt).
- a batch of ``batch`` bytes in parts of ``part`` bytes: each part made, sealed with ``seal()``, dropped.
Peak memory is the process's resident high-water mark above what it held before the payload
existed, so it includes the payload itself: ``seal()`` needs at least payload + sealed part (2x).
Goal (issue 3): >= 500 MB/s, peak <= 2 x part size.

    python -m bench.seal_bench [--size BYTES] [--batch BYTES] [--part BYTES]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20
ROOT = Path(__file__).resolve().parent.parent
STAGE = "death_matching"


def run(sizes: tuple[int, ...] = (64 * MIB,), *, batch: int | None = 500 * 10**6, part: int = 64 * MIB,
        repeats: int = 3, verbose: bool = True) -> dict:
    """Measure every scenario; returns the figures (MB/s, MiB, ratios) and prints them when verbose."""
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="fundx-seal-bench-") as tmp:
        from fundx.crypto.pki import init_keys

        keys = init_keys(Path(tmp), (STAGE,)).dir
        for size in sizes:
            speed = _child("speed-part", keys, size=size, repeats=repeats)
            _child("prepare-open", keys, size=size)  # in its own process: making it must not count
            memory = {what: _child("memory-part", keys, size=size, what=what)["peak"]
                      for what in ("seal", "stream", "open")}
            figures = {
                **{name: round(value, 1) for name, value in speed.items()},
                "seal_vs_aesgcm": round(speed["seal_MBps"] / speed["aesgcm_MBps"], 2),
                "seal_vs_gcm_chunked": round(speed["seal_MBps"] / speed["gcm_chunked_MBps"], 2),
                **{f"{what}_peak_MiB": round(peak / MIB, 1) for what, peak in memory.items()},
                **{f"{what}_peak_per_part": round(peak / size, 2) for what, peak in memory.items()},
            }
            results[f"part_{size // MIB}MiB"] = figures
            if verbose:
                _print_part(size, figures)
        if batch:
            speed = _child("speed-batch", keys, size=batch, part=part)
            peak = _child("memory-batch", keys, size=batch, part=part)["peak"]
            figures = {
                **{name: round(value, 1) for name, value in speed.items()},
                "seal_vs_aesgcm": round(speed["seal_MBps"] / speed["aesgcm_MBps"], 2),
                "seal_peak_MiB": round(peak / MIB, 1),
                "seal_peak_per_part": round(peak / part, 2),
            }
            results[f"batch_{batch // 10**6}MB_in_{part // MIB}MiB_parts"] = figures
            if verbose:
                _print_batch(batch, part, figures)
    return results


def _meets_goal(mbps: float, peak_mib: float, part: int) -> str:
    """Issue 3: >= 500 MB/s and peak <= 2 x part (payload in + sealed part out), plus the 1 MiB buffers."""
    return "goal met" if mbps >= 500 and peak_mib <= 2 * part / MIB + 4 else "BELOW GOAL"


def _print_part(size: int, f: dict) -> None:
    goal = _meets_goal(f["seal_MBps"], f["seal_peak_MiB"], size)
    print(f"seal, one {size // MIB} MiB part: {f['seal_MBps']:.0f} MB/s = {f['seal_vs_aesgcm']:.2f} x AESGCM.encrypt "
          f"({f['aesgcm_MBps']:.0f} MB/s), {f['seal_vs_gcm_chunked']:.2f} x GCM in 1 MiB chunks "
          f"({f['gcm_chunked_MBps']:.0f} MB/s); SHA-256 {f['sha256_MBps']:.0f} MB/s  [{goal}]")
    print(f"  seal_into a stream {f['seal_stream_MBps']:.0f} MB/s, open_sealed {f['open_MBps']:.0f} MB/s")
    print(f"  peak memory / part: seal {f['seal_peak_per_part']:.2f}, seal_into {f['stream_peak_per_part']:.2f}, "
          f"open {f['open_peak_per_part']:.2f} (input and output included: seal() holds payload + sealed part)")


def _print_batch(batch: int, part: int, f: dict) -> None:
    goal = _meets_goal(f["seal_MBps"], f["seal_peak_MiB"], part)
    print(f"seal, {batch / 10**6:.0f} MB batch in {part // MIB} MiB parts: {f['seal_MBps']:.0f} MB/s = "
          f"{f['seal_vs_aesgcm']:.2f} x AESGCM.encrypt ({f['aesgcm_MBps']:.0f} MB/s); "
          f"peak {f['seal_peak_MiB']:.0f} MiB = {f['seal_peak_per_part']:.2f} x part  [{goal}]")


def _child(mode: str, keys: Path, **params) -> dict:
    spec = json.dumps({"mode": mode, "keys": str(keys), **params})
    done = subprocess.run([sys.executable, "-m", "bench.seal_bench", "--child", spec], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"seal bench child {mode} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- inside a child process ----------------------------------------------------------------------


def _rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _start_peak() -> int:
    """Start the peak over from the memory held now and return that memory (bytes).

    ru_maxrss keeps the high-water mark of the imports and the warm-up, which a 64 MiB payload may never
    exceed (the figure was then 0): on Linux the mark is reset to the resident memory of now.
    """
    from bench.feedrun import reset_hwm, vm_rss

    return vm_rss() if reset_hwm() and vm_rss() else _rss_peak()


def _peak_since(base: int) -> int:
    from bench.feedrun import vm_hwm

    return max(0, (vm_hwm() or _rss_peak()) - base)


class _Discard(io.BytesIO):
    """A binary stream that drops what it is given (seal_into without a disk)."""

    def write(self, data) -> int:
        return len(data)


def _best(call, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
    return best


def _measure(spec: dict) -> dict:
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.manifest import Manifest
    from fundx.crypto.opening import open_sealed
    from fundx.crypto.seal import CHUNK, seal, seal_into

    store = KeyStore(KeySettings(dir=Path(spec["keys"])))
    signer_key, signer_cert = store.exchange_signer()
    recipients = store.recipient_certificates(STAGE)
    stage_key, stage_cert = store.stage_keys(STAGE)[0]
    ca = store.ca()
    size, mode = spec["size"], spec["mode"]
    part = spec.get("part", size)

    def manifest(number: int = 1, parts: int = 1) -> Manifest:
        return Manifest(batch_id="bench", feed="bench.feed", window_start="2026-11-21T00:00:00+08:00",
                        window_end="2026-11-22T00:00:00+08:00", part=number, parts=parts, rows=0,
                        content_digest="sha256:" + "0" * 64, contract_version="1", recipient=STAGE,
                        created_at="2026-11-22T02:00:00+08:00")

    def sealed(payload: bytes, number: int = 1, parts: int = 1) -> bytes:
        return seal(payload, manifest(number, parts), signer_key=signer_key, signer_cert=signer_cert,
                    recipients=recipients)

    seal(b"warm-up", manifest(), signer_key=signer_key, signer_cert=signer_cert, recipients=recipients)
    base = _start_peak()

    if mode == "speed-part":
        payload = os.urandom(size)
        key, nonce = os.urandom(32), os.urandom(12)

        def gcm_chunked() -> None:
            encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
            buffer, view = bytearray(CHUNK + 15), memoryview(payload)
            for offset in range(0, size, CHUNK):
                encryptor.update_into(view[offset : offset + CHUNK], buffer)
            encryptor.finalize()

        repeats = spec["repeats"]
        part_bytes = sealed(payload)
        rate = lambda seconds: size / seconds / 1e6  # noqa: E731 - MB/s
        return {
            "seal_MBps": rate(_best(lambda: sealed(payload), repeats)),
            "seal_stream_MBps": rate(_best(lambda: seal_into(_Discard(), payload, manifest(), signer_key=signer_key,
                                                             signer_cert=signer_cert, recipients=recipients), repeats)),
            "open_MBps": rate(_best(lambda: open_sealed(part_bytes, recipient_key=stage_key, recipient_cert=stage_cert,
                                                        trusted_ca=ca), repeats)),
            "aesgcm_MBps": rate(_best(lambda: AESGCM(key).encrypt(nonce, payload, None), repeats)),
            "gcm_chunked_MBps": rate(_best(gcm_chunked, repeats)),
            "sha256_MBps": rate(_best(lambda: hashlib.sha256(payload).digest(), repeats)),
        }

    if mode == "prepare-open":
        (Path(spec["keys"]) / f"bench-{size}.sealed").write_bytes(sealed(os.urandom(size)))
        return {}

    if mode == "memory-part":
        what = spec["what"]
        if what == "open":
            data = (Path(spec["keys"]) / f"bench-{size}.sealed").read_bytes()
            opened = open_sealed(data, recipient_key=stage_key, recipient_cert=stage_cert, trusted_ca=ca)
            assert len(opened.payload) == size
        else:
            payload = os.urandom(size)
            if what == "seal":
                assert len(sealed(payload)) > size
            else:
                seal_into(_Discard(), payload, manifest(), signer_key=signer_key, signer_cert=signer_cert,
                          recipients=recipients)
        return {"peak": _peak_since(base)}

    parts = -(-size // part)
    if mode == "speed-batch":
        key = os.urandom(32)
        sealing = aesgcm = 0.0
        for number in range(1, parts + 1):
            payload = os.urandom(min(part, size - (number - 1) * part))
            began = time.perf_counter()
            sealed_part = sealed(payload, number, parts)
            sealing += time.perf_counter() - began
            del sealed_part
            began = time.perf_counter()
            AESGCM(key).encrypt(os.urandom(12), payload, None)
            aesgcm += time.perf_counter() - began
            del payload
        return {"seal_MBps": size / sealing / 1e6, "aesgcm_MBps": size / aesgcm / 1e6}

    if mode == "memory-batch":
        for number in range(1, parts + 1):
            payload = os.urandom(min(part, size - (number - 1) * part))
            sealed_part = sealed(payload, number, parts)
            del payload, sealed_part
        return {"peak": _peak_since(base)}

    raise ValueError(f"unknown bench mode {mode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seal_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64 * MIB, help="bytes of the one-part scenario")
    parser.add_argument("--batch", type=int, default=500 * 10**6, help="bytes of the batch scenario (0: skip)")
    parser.add_argument("--part", type=int, default=64 * MIB, help="part size of the batch scenario")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(json.loads(args.child))))
        return 0
    run((args.size,), batch=args.batch or None, part=args.part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
