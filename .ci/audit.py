"""The dependency audit (``make audit``, run by ``make lint``): known vulnerabilities in constraints.txt's pins.

1. pip-audit asks PyPI's JSON API about each pinned version (https://pypi.org/pypi/NAME/VERSION/json,
   its "vulnerabilities", the PyPA advisory database).
2. Pins pip-audit could not check (that per-version API does not answer from machines that reach only
   the registries' package indexes) are checked against the project's own JSON
   (https://pypi.org/pypi/NAME/json), whose "vulnerabilities" are those of the project's latest release:
   so only a pin that *is* the latest release is checked that way; older pins are named as unchecked.

Exit status 1 when a checked pin has a known vulnerability that .ci/audit-ignore.txt does not list (each
printed as ``package version advisory-id (fixed in ...)``); 0 otherwise, also when the audit could not
run at all (one line says so and how to run it by hand). FUNDX_AUDIT_STRICT=1 makes "could not run"
and unchecked pins fail as well.

The ignore list: one advisory id (or one of its aliases) a line, then its reason (required), e.g.
``GHSA-xxxx-xxxx-xxxx  only the CLI's --foo is affected and fundx never runs it; bump with prefect 3.9``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
IGNORE = ROOT / ".ci" / "audit-ignore.txt"
PYPI = "https://pypi.org/pypi"
BY_HAND = (".venv/bin/pip-audit -r constraints.txt --no-deps --disable-pip (PyPI's per-version JSON API), "
           "or the same with -s osv (api.osv.dev), on a machine that reaches either")
STRICT = os.environ.get("FUNDX_AUDIT_STRICT") == "1"

#: (package, pinned version, advisory id, fixed versions)
Finding = tuple[str, str, str, list[str]]


def ignored() -> dict[str, str]:
    """Advisory ids to ignore, each with its reason."""
    out: dict[str, str] = {}
    if not IGNORE.exists():
        return out
    for number, raw in enumerate(IGNORE.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        advisory, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{IGNORE.relative_to(ROOT)}:{number}: {advisory} has no reason; write one after the id")
        out[advisory] = reason.strip()
    return out


def pins() -> dict[str, str]:
    """constraints.txt's ``name==version`` lines, by canonical name."""
    out: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def pip_audit(skip: dict[str, str]) -> tuple[list[Finding], set[str]] | str:
    """pip-audit's findings and the names it checked; or why it could not run."""
    with tempfile.TemporaryDirectory(prefix="fundx-audit-") as tmp:
        report = Path(tmp) / "audit.json"
        cmd = [sys.executable, "-m", "pip_audit", "-r", str(CONSTRAINTS), "--no-deps", "--disable-pip",
               "--progress-spinner", "off", "--timeout", "15", "-f", "json", "-o", str(report)]
        for advisory in skip:
            cmd += ["--ignore-vuln", advisory]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return "pip-audit did not finish within 10 minutes"
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"pip-audit exited {done.returncode}: {last[:300]}"
    audited = [d for d in data.get("dependencies", []) if "skip_reason" not in d]
    found = [(d["name"], d["version"], v["id"], list(v.get("fix_versions") or []))
             for d in audited for v in d.get("vulns", [])]
    return found, {canonicalize_name(d["name"]) for d in audited}


def _project(name: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=15) as response:  # noqa: S310 - a fixed https URL
            return json.load(response)
    except (OSError, ValueError):
        return None


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def latest_releases(wanted: dict[str, str], skip: dict[str, str]) -> tuple[list[Finding], list[str], list[str]]:
    """Findings for pins that are their project's latest release; the names of older pins; unreachable ones."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(wanted, pool.map(_project, wanted)))
    found: list[Finding] = []
    older: list[str] = []
    unreachable: list[str] = []
    for name, version in wanted.items():
        data = answers[name]
        if data is None:
            unreachable.append(name)
            continue
        if not _same(str(data.get("info", {}).get("version")), version):
            older.append(f"{name}=={version}")
            continue
        for v in data.get("vulnerabilities") or []:
            if v.get("withdrawn") or {v.get("id"), *(v.get("aliases") or [])} & set(skip):
                continue
            found.append((name, version, str(v.get("id")), list(v.get("fixed_in") or [])))
    return found, older, unreachable


def main() -> int:
    skip = ignored()
    pinned = pins()
    result = pip_audit(skip)
    found: list[Finding] = []
    checked: set[str] = set()
    why = ""
    if isinstance(result, str):
        why = result
    else:
        found, checked = result
    rest = {name: version for name, version in pinned.items() if name not in checked}
    older: list[str] = []
    unreachable: list[str] = []
    if rest:
        more, older, unreachable = latest_releases(rest, skip)
        found += more
    checked_count = len(pinned) - len(older) - len(unreachable)
    if checked_count == 0:
        print(f"dependency audit: could not run ({why or 'the vulnerability services answered for no pin'}); "
              f"run it by hand: {BY_HAND}")
        return 1 if STRICT else 0
    for name, version, advisory, fixed in found:
        fix = f"fixed in {', '.join(fixed)}" if fixed else "no fixed version yet"
        print(f"vulnerable: {name} {version} {advisory} ({fix})")
    how = ("pip-audit" if not rest else
           "pip-audit, and PyPI's data on the latest release where pip-audit could not" if checked else
           "PyPI's data on each project's latest release, as pip-audit could check no pin: "
           "PyPI's per-version JSON API does not answer here")
    summary = (f"dependency audit: {len(found) or 'no'} known vulnerabilities in {checked_count} of {len(pinned)} "
               f"pins (checked with {how})")
    if skip:
        summary += f", {len(skip)} advisories ignored ({IGNORE.relative_to(ROOT)})"
    print(summary)
    if older or unreachable:
        print(f"dependency audit: {len(older) + len(unreachable)} pins not checked"
              + (f" (older than their latest release: {', '.join(older)})" if older else "")
              + (f" (no answer for: {', '.join(unreachable)})" if unreachable else "")
              + f"; to check them run by hand: {BY_HAND}")
    if found:
        print(f"bump the pin (constraints.txt), or list the advisory id with a reason in {IGNORE.relative_to(ROOT)}")
        return 1
    return 1 if STRICT and (older or unreachable) else 0


if __name__ == "__main__":
    sys.exit(main())
