"""The CI gate: every contract against its last released copy (contracts/released/). A breaking change
needs a new major version; a new feed has no released copy yet and passes with a note on how to release it.
``fundx contract release FEED`` copies a contract there only when the gate allows it."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import contracts
import contracts.release
from contracts import contract_names, contract_path
from contracts.release import RELEASED_DIR, ReleaseRefused, check_release, release, released_path
from fundx.cli.contract import contract_app

#: the feeds live when the gate was introduced: each has a released copy
LIVE = ("civil_affairs.deaths", "justice.prisoners", "market_regulation.businesses", "medical_insurance.bills",
        "police.deaths", "religious_affairs.deaths")


@pytest.mark.parametrize("feed", contract_names())
def test_no_breaking_change_without_a_major_version_bump(feed: str) -> None:
    check = check_release(feed)
    if check.is_new:
        warnings.warn(f"{feed}: no released copy yet (a new feed; not checked). When it is reviewed and agreed, "
                      f"release it: fundx contract release {feed}", UserWarning, stacklevel=1)
        return
    diff = check.diff
    listed = "\n".join(f"  - {c.change}: {c.field}: {c.detail}" for c in diff.breaking)
    assert diff.allowed, (
        f"{feed}: {len(diff.breaking)} breaking change(s) against contracts/released/{feed}.odcs.yaml "
        f"without a major version bump ({diff.old_version} → {diff.new_version}):\n{listed}\n"
        f"raise version to {diff.next_major} in contracts/{feed}.odcs.yaml if the break is agreed with the agency "
        f"and the stages (then: fundx contract release {feed}), or make the change compatible "
        f"(docs/contracts-evolution.md)")


def test_every_live_feed_has_a_released_copy() -> None:
    assert {p.name for p in RELEASED_DIR.glob("*.odcs.yaml")} >= {f"{feed}.odcs.yaml" for feed in LIVE}
    for path in RELEASED_DIR.glob("*.odcs.yaml"):
        feed = path.name[: -len(".odcs.yaml")]
        assert contract_path(feed).is_file(), f"{path.name}: released, but contracts/{path.name} is gone (removing a feed is breaking)"


# --- the gate on deliberately broken copies ------------------------------------------------------------------

FEED = "police.deaths"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A contracts folder holding police.deaths and a released folder holding its released copy."""
    current, released = tmp_path / "contracts", tmp_path / "released"
    current.mkdir()
    released.mkdir()
    shutil.copyfile(contract_path(FEED), current / f"{FEED}.odcs.yaml")
    shutil.copyfile(contract_path(FEED), released / f"{FEED}.odcs.yaml")
    return current, released


def _edit(folder: Path, change: Callable[[dict], object], version: str | None = None) -> None:
    path = folder / f"{FEED}.odcs.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(document)
    if version:
        document["version"] = version
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _prop(d: dict, name: str) -> dict:
    return next(p for p in d["schema"][0]["properties"] if p["name"] == name)


BROKEN = [
    ("field removed", lambda d: d["schema"][0]["properties"].remove(_prop(d, "gender")), "field removed", "gender"),
    ("required added", lambda d: _prop(d, "police_station").update(required=True), "required added", "police_station"),
    ("classification changed", lambda d: _prop(d, "name").update(classification="internal"),
     "classification changed", "name"),
]


@pytest.mark.parametrize(("what", "change", "kind", "field"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_breaking_change_fails_the_gate_until_the_major_is_raised(dirs, what: str, change, kind: str, field: str) -> None:
    current, released = dirs
    _edit(current, change, version="1.2.0")
    check = check_release(FEED, contracts_dir=current, released_dir=released)
    assert not check.allowed
    assert [(c.change, c.field) for c in check.diff.breaking] == [(kind, field)]
    with pytest.raises(ReleaseRefused, match="without a major version bump"):
        release(FEED, contracts_dir=current, released_dir=released)
    assert released_path(FEED, released).read_bytes() == contract_path(FEED).read_bytes()  # not copied
    _edit(current, lambda d: None, version="2.0.0")
    check = check_release(FEED, contracts_dir=current, released_dir=released)
    assert check.allowed and check.diff.breaking
    release(FEED, contracts_dir=current, released_dir=released)
    assert released_path(FEED, released).read_bytes() == (current / f"{FEED}.odcs.yaml").read_bytes()
    assert check_release(FEED, contracts_dir=current, released_dir=released).diff.changes == ()


def test_a_compatible_change_passes_and_a_new_feed_is_not_checked(dirs) -> None:
    current, released = dirs
    _edit(current, lambda d: _prop(d, "name")["logicalTypeOptions"].update(maxLength=80), version="1.2.0")
    check = check_release(FEED, contracts_dir=current, released_dir=released)
    assert check.allowed and check.diff.changes and not check.diff.breaking
    released_path(FEED, released).unlink()
    check = check_release(FEED, contracts_dir=current, released_dir=released)
    assert check.is_new and check.allowed
    release(FEED, contracts_dir=current, released_dir=released)
    assert released_path(FEED, released).is_file()


def test_a_draft_still_marked_for_review_is_not_released(dirs) -> None:
    current, released = dirs
    _edit(current, lambda d: _prop(d, "name")["customProperties"].append(
        {"property": "reviewNeeded", "value": True, "description": "personal data guessed"}))
    with pytest.raises(ReleaseRefused, match="still marked reviewNeeded: name"):
        release(FEED, contracts_dir=current, released_dir=released)


@pytest.fixture
def cli_dirs(dirs, monkeypatch):
    """The CLI's default folders pointed at the temporary ones."""
    current, released = dirs
    monkeypatch.setattr(contracts, "CONTRACTS_DIR", current)
    monkeypatch.setattr(contracts.release, "RELEASED_DIR", released)
    return current, released


def test_the_release_command(cli_dirs) -> None:
    current, released = cli_dirs
    runner = CliRunner()
    same = runner.invoke(contract_app, ["release", FEED])
    assert same.exit_code == 0 and "already released" in same.output, same.output
    _edit(current, BROKEN[0][1], version="1.2.0")
    refused = runner.invoke(contract_app, ["release", FEED])
    assert refused.exit_code == 1, refused.output
    assert "field removed" in refused.output and "gender" in refused.output and "2.0.0" in refused.output
    assert released_path(FEED, released).read_bytes() == (RELEASED_DIR / f"{FEED}.odcs.yaml").read_bytes()  # kept
    _edit(current, lambda d: None, version="2.0.0")
    done = runner.invoke(contract_app, ["release", FEED])
    assert done.exit_code == 0 and "released to" in done.output, done.output
    assert released_path(FEED, released).read_bytes() == (current / f"{FEED}.odcs.yaml").read_bytes()
    unknown = runner.invoke(contract_app, ["release", "nobody.nothing"])
    assert unknown.exit_code == 2 and "no contract for feed" in unknown.output
    (current / f"{FEED}.odcs.yaml").write_text("schema: [\n", encoding="utf-8")
    broken = runner.invoke(contract_app, ["release", FEED])
    assert broken.exit_code == 2 and "not valid YAML" in broken.output and f"{FEED}.odcs.yaml" in broken.output


def test_an_inferred_draft_is_released_only_after_review(cli_dirs, tmp_path: Path) -> None:
    """Onboarding end to end: infer a draft into contracts/, release refuses it, review it, release it."""
    current, released = cli_dirs
    sample = tmp_path / "sample.csv"
    sample.write_text("编号,死亡日期\nA1,2021-04-12\nA2,2021/4/13\nA3,2021年4月14日\n", encoding="utf-8-sig")
    runner = CliRunner()
    inferred = runner.invoke(contract_app, ["infer", str(sample), "--feed", "new_agency.deaths"])
    assert inferred.exit_code == 0, inferred.output
    path = current / "new_agency.deaths.odcs.yaml"
    assert path.is_file()
    refused = runner.invoke(contract_app, ["release", "new_agency.deaths"])
    assert refused.exit_code == 1 and "reviewNeeded" in refused.output
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["customProperties"] = [c for c in document["customProperties"] if c["property"] != "reviewNeeded"]
    for prop in document["schema"][0]["properties"]:
        prop["customProperties"] = [c for c in prop["customProperties"] if c["property"] != "reviewNeeded"]
    document["version"] = "1.0.0"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    first = runner.invoke(contract_app, ["release", "new_agency.deaths"])
    assert first.exit_code == 0 and "first release" in first.output, first.output
    assert (released / "new_agency.deaths.odcs.yaml").read_bytes() == path.read_bytes()
