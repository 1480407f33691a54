"""Scaffolding a new agency feed (onboarding/scaffold.py, `fundx connector new`): the files it writes,
TODOs that fail loading by name, a filled config that loads (and pulls from the sandbox), no overwrite."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

import connectors
import contracts
from connectors import build_connector, load_feed
from connectors.registry import registry
from contracts import load_contract
from contracts.rules import contract_rules
from contracts.sla.policy import compile_sla
from fundx.core.errors import ConfigurationError
from fundx.core.settings import reload_settings
from fundx.crypto.pki import recipients
from onboarding.scaffold import feed_stages, scaffold

HEALTH = "health_commission.hospital_deaths"
TAX = "tax_bureau.wage_income"
PAROLE = "justice.parole_releases"
CASES = {"rest": (HEALTH, "death_matching"), "database": (TAX, "employer_review"),
         "filedrop": (PAROLE, "custody_matching")}
#: the keys each transport's scaffold leaves to fill, as loading names them
TODO_KEYS = {
    "rest": ["title", "rest.path", "rest.records", "rest.auth", "rest.paging", "rest.window.start_param",
             "rest.window.end_param"],
    "database": ["title", "database.relation", "database.incremental_column", "database.order_by"],
    "filedrop": ["title", "filedrop.pattern", "filedrop.format"],
}


SHIPPED_FEEDS, SHIPPED_CONTRACTS = connectors.FEEDS_DIR, contracts.CONTRACTS_DIR
#: the shipped feeds the scratch repository starts with (the scaffolded ones are left out)
KEPT = [f for f in registry().names if f not in (HEALTH, TAX, PAROLE)]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A scratch repository: load_feed and load_contract read its connectors/feeds and contracts, which
    hold the shipped feeds but the ones the tests scaffold (the stages are those its feeds deliver to)."""
    feeds, folder = tmp_path / "connectors" / "feeds", tmp_path / "contracts"
    feeds.mkdir(parents=True)
    folder.mkdir()
    for feed in KEPT:
        shutil.copy(connectors.FEEDS_DIR / f"{feed}.yaml", feeds)
        shutil.copy(contracts.CONTRACTS_DIR / f"{feed}.odcs.yaml", folder)
    monkeypatch.setattr(connectors, "FEEDS_DIR", feeds)
    monkeypatch.setattr(contracts, "CONTRACTS_DIR", folder)
    return tmp_path


# --- editing a scaffolded config the way a person does --------------------------------------------


def choose(text: str, tag: str, kind: str) -> str:
    """Drop ``<tag>: TODO`` and uncomment the ``# --- <kind>:`` block's keys."""
    out, active = [], False
    for line in text.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(f"{tag}: TODO"):
            continue
        if stripped.startswith("# --- "):
            active = stripped.startswith(f"# --- {kind}:")
            out.append(line)
            continue
        if not stripped.startswith("#"):
            active = False
        if active and re.match(r"# [a-z_]+:( |$)", stripped):
            out.append(indent + stripped[2:])
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def fill(text: str, key: str, value: str) -> str:
    """Set the first uncommented ``key:`` (keeping its indent and comment)."""
    new, n = re.subn(rf"^(\s*){key}:[^\n#]*(#.*)?$", lambda m: f"{m.group(1)}{key}: {value}  {m.group(2) or ''}".rstrip(),
                     text, count=1, flags=re.M)
    assert n == 1, f"no {key}: to fill"
    return new


def uncomment_matching(text: str) -> str:
    return re.sub(r"^# (matching:|  table:|  columns:|    [a-z_]+:)", r"\1", text, flags=re.M)


def write(repo: Path, feed: str, transport: str, stage: str) -> tuple[Path, str]:
    paths = scaffold(feed, transport, stage=stage, root=repo)
    return paths[0], paths[0].read_text(encoding="utf-8")


# --- what is written ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", sorted(CASES))
def test_writes_config_and_contract_only(repo, transport):
    feed, stage = CASES[transport]
    agency = feed.partition(".")[0]
    paths = scaffold(feed, transport, stage=stage, root=repo)
    assert paths == [repo / "connectors" / "feeds" / f"{feed}.yaml", repo / "contracts" / f"{feed}.odcs.yaml"]
    assert not (repo / "tests").exists()  # the conformance suite and the sandbox take the feed from its config
    text = paths[0].read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../feed.schema.json"
    document = yaml.safe_load(text)  # structurally valid YAML
    assert document["feed"] == feed and document["agency"] == agency and document["contract"] == feed
    assert document["stage"] == stage and document["transport"] == transport and transport in document
    assert "matching" not in document and "\n# matching:\n" in text  # commented out, with the stage's tables
    assert "IS the routing" in text and "# TODO" in text
    secrets = re.findall(r": env:([A-Z_]+)", text)
    assert secrets and all(s.startswith(f"FUNDX_{agency.upper()}_") for s in secrets)

    contract = load_contract(feed, path=paths[1])  # a draft that loads and compiles
    assert contract.version == "0.1.0" and contract.raw.status == "draft" and contract.key == ("record_id",)
    assert contract.raw.id == f"urn:fundx:contract:{feed}"
    assert contract.column("id_number").pii == "identity_number" and contract.column("name").pii == "name"
    assert contract_rules(contract).policy.min_failed_rows == 5
    assert compile_sla(contract).event_element == "event_date"
    assert f"fundx contract infer SAMPLE --feed {feed} --force" in paths[1].read_text(encoding="utf-8")

    assert "\n# conformance:\n" in text and "conformance" not in document  # a skip: commented out
    skipped = yaml.safe_load(re.sub(r"^# (conformance:|  skip:)", r"\1", text, flags=re.M))["conformance"]["skip"]
    assert set(skipped) == {"paging"} and skipped["paging"]


def test_the_matching_section_lists_the_stage_tables(repo):
    _, text = write(repo, HEALTH, "rest", "death_matching")
    assert "# The death_matching tables fed by agencies: deaths (" in text
    assert "paid_after_death" in text
    section = yaml.safe_load(uncomment_matching(text))["matching"]
    assert section["table"] == "deaths" and list(section["columns"]) == ["record_key", "id_number", "name", "death_date"]


def test_the_draft_contract_cannot_be_released_as_it_is(repo):
    diff = pytest.importorskip("contracts.release", reason="contracts/release.py (fundx contract release) is not there yet")
    paths = scaffold(HEALTH, "rest", stage="death_matching", root=repo)
    check = diff.check_release(HEALTH, contracts_dir=paths[1].parent, released_dir=repo / "released")
    assert check.is_new and check.review == (diff.CONTRACT,)  # reviewNeeded: release refuses it
    with pytest.raises(diff.ReleaseRefused, match="reviewNeeded"):
        diff.release(HEALTH, contracts_dir=paths[1].parent, released_dir=repo / "released")


def test_the_conformance_comment_names_the_checks(repo):
    from onboarding.conformance import CHECKS

    config = scaffold(HEALTH, "rest", stage="death_matching", root=repo)[0].read_text(encoding="utf-8")
    assert ", ".join(CHECKS) in " ".join(line.lstrip("# ") for line in config.splitlines())


def test_the_draft_contract_compiles_to_a_gx_suite(repo):
    from contracts.compile import compile_suite

    paths = scaffold(HEALTH, "rest", stage="death_matching", root=repo)
    assert compile_suite(load_contract(HEALTH, path=paths[1])).expectations


# --- TODOs fail loading, naming the keys ---------------------------------------------------------


@pytest.mark.parametrize("transport", sorted(CASES))
def test_todo_values_fail_loading_naming_every_key_to_fill(repo, transport):
    feed, stage = CASES[transport]
    scaffold(feed, transport, stage=stage, root=repo)
    with pytest.raises(ConfigurationError) as info:
        load_feed(feed)
    message = str(info.value)
    named = re.findall(r"(?:^|; |: )([a-z_.]+): ", message.split(".yaml: ", 1)[1])
    assert sorted(set(named)) == sorted(TODO_KEYS[transport]), message
    if transport == "rest":
        assert "unknown style 'TODO'; expected one of 'cursor', 'page_size', 'changed_since'" in message
        assert "unknown type 'TODO'; expected one of 'bearer', 'api_key', 'oauth2_client_credentials'" in message
    if transport == "filedrop":
        assert "filedrop.format: must be one of 'csv' or 'xlsx'" in message


# --- filled in, it loads -------------------------------------------------------------------------


def filled_rest(text: str, auth: str = "bearer") -> str:
    """The scaffold filled with the sandbox civil affairs endpoint's settings (docs/agencies.md)."""
    text = fill(text, "title", "Funeral and cremation records, as a test (殡葬火化记录)")
    text = fill(text, "path", "/api/v1/cremations")
    text = fill(text, "records", "data")
    text = choose(text, "type", auth)
    text = choose(text, "style", "cursor")
    text = fill(text, "page_size", "1000")
    text = fill(text, "start_param", "reported_from")
    return fill(text, "end_param", "reported_to")


def test_filled_rest_config_loads(repo):
    path, text = write(repo, HEALTH, "rest", "death_matching")
    path.write_text(filled_rest(text), encoding="utf-8")
    config = load_feed(HEALTH)
    assert config.stage == "death_matching" and config.rest is not None
    assert config.rest.auth.type == "bearer" and config.rest.auth.token == "env:FUNDX_HEALTH_COMMISSION_TOKEN"
    assert config.rest.paging.style == "cursor" and config.rest.paging.page_size == 1000
    assert config.rest.base_url == "env:FUNDX_HEALTH_COMMISSION_URL"
    assert config.matching is None

    # the matching section, uncommented and mapped to the draft contract's columns
    text = uncomment_matching(path.read_text(encoding="utf-8"))
    for key, column in (("record_key", "record_id"), ("id_number", "id_number"), ("name", "name"),
                        ("death_date", "event_date")):
        text = re.sub(rf"^(    {key}):", rf"\1: {column}", text, count=1, flags=re.M)
    path.write_text(text, encoding="utf-8")
    config = load_feed(HEALTH)
    assert config.matching is not None and config.matching.table == "deaths"
    assert config.matching.sources() == ["record_id", "id_number", "name", "event_date"]
    from matching.load import feed_sql

    table, sql, vault = feed_sql(HEALTH)  # what the death-matching stage would keep of it
    assert table == "deaths" and "death_date" in sql and vault is not None


@pytest.mark.parametrize("kind", ["api_key", "oauth2_client_credentials"])
def test_every_auth_block_loads_once_filled(repo, kind):
    path, text = write(repo, HEALTH, "rest", "death_matching")
    text = filled_rest(text, auth=kind)
    if kind == "api_key":
        text = fill(text, "header", "X-Api-Key")
    else:
        text = fill(text, "token_url", "/oauth2/token")
    path.write_text(text, encoding="utf-8")
    auth = load_feed(HEALTH).rest.auth
    assert auth.type == kind


@pytest.mark.parametrize("style", ["page_size", "changed_since", "link_header"])
def test_every_paging_block_loads_once_filled(repo, style):
    path, text = write(repo, HEALTH, "rest", "death_matching")
    text = fill(text, "title", "Hospital death notifications (医院死亡通知)")
    text = fill(text, "path", "/api/v1/notifications")
    text = fill(text, "records", "data")
    text = re.sub(r"^  auth:\n    type: TODO.*\n", "", text, flags=re.M)
    text = choose(text, "style", style)
    text = fill(text, "page_size", "500")
    if style == "changed_since":
        text = fill(text, "cursor_field", "updated_at")
        text = re.sub(r"^  window:\n(    .*\n)+", "", text, flags=re.M)
    else:
        text = fill(text, "start_param", "notified_from")
        text = fill(text, "end_param", "notified_to")
    path.write_text(text, encoding="utf-8")
    config = load_feed(HEALTH)
    assert config.rest.paging.style == style and config.rest.paging.page_size == 500 and config.rest.auth is None


def test_filled_database_config_loads_with_a_new_store_table(repo):
    path, text = write(repo, TAX, "database", "employer_review")
    text = fill(text, "title", "Wage income withheld by employers (工资薪金所得)")
    text = fill(text, "relation", "v_wage_income")
    text = fill(text, "incremental_column", "updated_at")
    text = fill(text, "order_by", "[updated_at, record_id]")
    text = uncomment_matching(text)
    text = re.sub(r"^  table: businesses.*$", "  table: wages", text, flags=re.M)
    text = re.sub(r"^  columns:\n(    .*\n)+", "  columns: {record_key: record_id, id_number: id_number, paid_on: event_date}\n",
                  text, flags=re.M)
    path.write_text(text, encoding="utf-8")
    config = load_feed(TAX)
    assert config.database.url == "env:FUNDX_TAX_BUREAU_DB_URL" and config.database.order_by == ["updated_at", "record_id"]
    assert config.stage == "employer_review" and config.matching.table == "wages"


def test_filled_filedrop_config_loads(repo):
    path, text = write(repo, PAROLE, "filedrop", "custody_matching")
    text = fill(text, "title", "Parole releases (假释人员)")
    text = fill(text, "pattern", '"parole_*.csv"')
    text = fill(text, "format", "csv")
    path.write_text(text, encoding="utf-8")
    config = load_feed(PAROLE)
    assert config.filedrop.directory == "env:FUNDX_JUSTICE_DROP" and config.filedrop.format == "csv"


@pytest.mark.timeout(240)
def test_filled_rest_config_pulls_from_the_sandbox_civil_affairs_endpoint(repo, tmp_path_factory, monkeypatch):
    """The filled config, with the civil affairs contract as its contract, pulls exactly what that agency serves."""
    from fundx.core.timeutil import Window
    from sandbox.agencies import Sandbox

    path, text = write(repo, HEALTH, "rest", "death_matching")
    path.write_text(filled_rest(text), encoding="utf-8")
    civil = (Path(contracts.__file__).parent / "civil_affairs.deaths.odcs.yaml").read_text(encoding="utf-8")
    (repo / "contracts" / f"{HEALTH}.odcs.yaml").write_text(civil.replace("civil_affairs.deaths", HEALTH),
                                                            encoding="utf-8")
    with pytest.MonkeyPatch.context() as shipped:  # the sandbox serves the shipped feeds
        shipped.setattr(connectors, "FEEDS_DIR", SHIPPED_FEEDS)
        shipped.setattr(contracts, "CONTRACTS_DIR", SHIPPED_CONTRACTS)
        sb = Sandbox(tmp_path_factory.mktemp("agencies"), people=2_000).start()
    try:
        monkeypatch.setenv("FUNDX_HEALTH_COMMISSION_URL", sb.env["FUNDX_CIVIL_AFFAIRS_URL"])
        monkeypatch.setenv("FUNDX_HEALTH_COMMISSION_TOKEN", sb.env["FUNDX_CIVIL_AFFAIRS_TOKEN"])
        window = Window.of("2020-01-01", sb.as_of + timedelta(days=1))
        pull = build_connector(load_feed(HEALTH), reload_settings()).extract(window)
        expected = sb.expected("civil_affairs.deaths", window.start, window.end)
    finally:
        sb.stop()
    reload_settings()
    assert len(expected) > 0 and pull.rows == len(expected) and pull.feed == HEALTH
    assert set(pull.frame["record_id"]) == set(expected["record_id"])


# --- refusals ------------------------------------------------------------------------------------


def test_refuses_to_overwrite_unless_forced(repo):
    paths = scaffold(HEALTH, "rest", stage="death_matching", root=repo)
    paths[0].write_text("# mine\n", encoding="utf-8")
    paths[1].unlink()
    with pytest.raises(FileExistsError) as info:
        scaffold(HEALTH, "rest", stage="death_matching", root=repo)
    assert f"connectors/feeds/{HEALTH}.yaml" in str(info.value) and f"contracts/{HEALTH}.odcs.yaml" not in str(info.value)
    assert paths[0].read_text(encoding="utf-8") == "# mine\n" and not paths[1].exists()  # nothing written
    assert scaffold(HEALTH, "database", stage="death_matching", root=repo, force=True) == paths
    assert "transport: database" in paths[0].read_text(encoding="utf-8") and paths[1].exists()


def test_the_stage_must_be_given_and_receive_feeds(repo):
    # the stages the feeds deliver to (here: the scratch repository's, the shipped ones but two)
    assert feed_stages() == ("bill_review", "custody_matching", "death_matching", "employer_review")
    assert set(feed_stages()) < set(recipients())
    with pytest.raises(ValueError, match="bill_review, custody_matching, death_matching, employer_review"):
        scaffold(HEALTH, "rest", root=repo)
    for stage in ("stewards", "investigators", "death-matching"):
        with pytest.raises(ValueError, match=f"stage {stage!r}: must be one of bill_review"):
            scaffold(HEALTH, "rest", stage=stage, root=repo)
    assert not (repo / "connectors" / "feeds" / f"{HEALTH}.yaml").exists()


@pytest.mark.parametrize("feed", ["health_commission", "Health.deaths", "health-commission.deaths", "a.b.c", "1x.y", ""])
def test_bad_feed_names_are_refused(repo, feed):
    with pytest.raises(ValueError, match="must be AGENCY.FEED"):
        scaffold(feed, "rest", stage="death_matching", root=repo)


def test_unknown_transport_is_refused(repo):
    with pytest.raises(ValueError, match="transport 'ftp': must be one of rest, filedrop, database"):
        scaffold(HEALTH, "ftp", stage="death_matching", root=repo)


def test_default_root_is_the_repository():
    from onboarding.scaffold import REPO_ROOT

    assert (REPO_ROOT / "connectors" / "feeds").resolve() == connectors.FEEDS_DIR.resolve()
    assert (REPO_ROOT / "contracts").resolve() == contracts.CONTRACTS_DIR.resolve()
