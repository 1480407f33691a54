"""Feed configs and contracts: the shipped ones load; bad ones fail with a message naming file and key."""

from __future__ import annotations

import copy

import pytest
import yaml

from connectors import FEEDS_DIR, connector_for, feed_names, load_feed, load_feed_file
from connectors.base import Connector
from contracts import Contract, contract_names, load_contract
from fundx.core.errors import ConfigurationError

#: every config shipped in connectors/feeds/ (the registry derives the feeds from these files alone)
SHIPPED = sorted(p.name.removesuffix(".yaml") for p in FEEDS_DIR.glob("*.yaml"))


def test_the_shipped_feeds_load_and_have_contracts():
    assert len(SHIPPED) >= 13 and "social_insurance.benefit_roll" in SHIPPED
    assert feed_names() == SHIPPED
    assert contract_names() == SHIPPED
    for feed in SHIPPED:
        config = load_feed(feed)
        assert config.feed == feed and config.contract == feed
        connector = connector_for(feed)
        assert isinstance(connector, Connector) and connector.transport == config.transport


def test_contract_shape():
    contract = load_contract("justice.prisoners")
    assert isinstance(contract, Contract)
    assert contract.key == ("prisoner_id",) and contract.incremental is None
    assert contract.names[0] == "prisoner_id"
    assert contract.physical_to_logical["身份证号码"] == "id_number"
    assert contract.column("id_number").pii == "identity_number"
    assert contract.column("id_number").classification == "restricted"
    assert load_contract("police.deaths").incremental == "updated_at"
    assert load_contract("police.deaths").column("name").physical_name == "name"


def test_unknown_feed_names_the_known_ones():
    with pytest.raises(ConfigurationError, match="no config for feed 'police.births'.*police.deaths"):
        load_feed("police.births")


def police() -> dict:
    return yaml.safe_load((FEEDS_DIR / "police.deaths.yaml").read_text(encoding="utf-8"))


def religious() -> dict:
    return yaml.safe_load((FEEDS_DIR / "religious_affairs.deaths.yaml").read_text(encoding="utf-8"))


def medical() -> dict:
    return yaml.safe_load((FEEDS_DIR / "medical_insurance.bills.yaml").read_text(encoding="utf-8"))


def market() -> dict:
    return yaml.safe_load((FEEDS_DIR / "market_regulation.businesses.yaml").read_text(encoding="utf-8"))


def edit(base, path: str, value):
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    doc = copy.deepcopy(base())
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


CASES = [
    (edit(police, "rest.paging.page_size", 0), "rest.paging.page_size: must be > 0"),
    (edit(police, "rest.paging.page_size", -5), "rest.paging.page_size: must be > 0"),
    (edit(police, "rest.paging.style", "offset"), "rest.paging: unknown style 'offset'"),
    (edit(police, "rest.paging.pagesize", 10), "rest.paging.pagesize: unknown key"),
    (edit(police, "rest.base_url", ...), "rest.base_url: is required"),
    (edit(police, "rest.auth.type", "basic"), "rest.auth: unknown type 'basic'"),
    (edit(police, "rest.auth.client_secret", "hunter2-literal"), "rest.auth.client_secret: must be a reference"),
    (edit(police, "rest.window", ...), "rest.window: is required with paging style page_size"),
    (edit(police, "rest.path", "hukou/v2"), "rest.path: must start with /"),
    (edit(police, "transport", "ftp"), "transport: must be one of 'rest', 'filedrop' or 'database'"),
    (edit(police, "transport", "filedrop"), "filedrop: is required with transport filedrop"),
    (edit(police, "feed", "police.births"), "feed: must be the file's name 'police.deaths'"),
    (edit(police, "contract", "police.births"), "contract: "),
    (edit(police, "colour", "blue"), "colour: unknown key"),
    (edit(religious, "filedrop.pattern", "../etc/*.csv"), "filedrop.pattern: must be a file-name pattern"),
    (edit(religious, "filedrop.pattern", "/etc/passwd"), "filedrop.pattern: must be a file-name pattern"),
    (edit(religious, "filedrop.format", "xlsx"), "filedrop.sheet: is required for xlsx"),
    (edit(religious, "filedrop.encoding", "klingon"), "filedrop.encoding: must be auto or a known codec name"),
    (edit(medical, "database.order_by", ["settled_at", "nope"]), "database.order_by.1: 'nope' is not a column"),
    (edit(medical, "database.chunk_size", 0), "database.chunk_size: must be > 0"),
    (edit(medical, "database.url", "sqlite:///plain.db"), "database.url: must be a reference"),
    (edit(medical, "database.incremental_column", "admitted_on"), "database.incremental_column: must be the contract's incremental column"),
    (edit(market, "rest.paging.cursor_field", "modified"), "rest.paging.cursor_field: 'modified' is not a column"),
    (edit(police, "rest.paging", {"style": "link_header", "page_size": 100, "max_pages": 0}),
     "rest.paging.max_pages: must be > 0"),
    (edit(police, "rest.paging", {"style": "link_header", "page_size": 100, "total": "total"}),
     "rest.paging.total: unknown key"),
    (edit(police, "rest.paging", {"style": "link_header"}), "rest.paging.page_size: is required"),
    (edit(lambda: edit(police, "rest.paging", {"style": "link_header", "page_size": 100}), "rest.window", ...),
     "rest.window: is required with paging style link_header"),
]


@pytest.mark.parametrize(("document", "message"), CASES, ids=[m.split(":")[0] + "-" + str(i) for i, (_, m) in enumerate(CASES)])
def test_bad_config_names_file_and_key(tmp_path, document, message):
    feed = document.get("feed", "x") if document.get("feed") != "police.births" else "police.deaths"
    name = feed if document.get("contract") != "police.births" else "police.deaths"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_feed_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "hunter2" not in text and "plain.db" not in text


def test_the_example_message_for_a_shipped_file(monkeypatch, tmp_path):
    import connectors

    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "police.deaths.yaml").write_text(yaml.safe_dump(edit(police, "rest.paging.page_size", 0)), encoding="utf-8")
    monkeypatch.setattr(connectors, "FEEDS_DIR", folder)
    with pytest.raises(ConfigurationError) as info:
        connectors.load_feed("police.deaths")
    assert str(info.value).endswith("police.deaths.yaml: rest.paging.page_size: must be > 0")
    assert info.value.feed == "police.deaths"


def test_shipped_feed_error_path_is_relative_to_the_repository():
    with pytest.raises(ConfigurationError) as info:
        load_feed("nope.nothing")
    assert str(info.value).startswith("connectors/feeds/nope.nothing.yaml: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("feed: [unclosed\n", r"not valid YAML \(line"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_not_a_config_at_all(tmp_path, text, message):
    path = tmp_path / "police.deaths.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        load_feed_file(path)


# --- contracts ---------------------------------------------------------------------------------


def contract_doc() -> dict:
    from contracts import contract_path

    return yaml.safe_load(contract_path("police.deaths").read_text(encoding="utf-8"))


def contract_edit(change) -> dict:
    doc = contract_doc()
    change(doc)
    return doc


CONTRACT_CASES = [
    (contract_edit(lambda d: d.__setitem__("colour", "blue")), "colour: "),
    (contract_edit(lambda d: d.__setitem__("name", "police.births")), "name: must be the feed's name"),
    (contract_edit(lambda d: [p.pop("primaryKey", None) for p in d["schema"][0]["properties"]]), "no column has primaryKey"),
    (contract_edit(lambda d: d["schema"][0]["properties"].append(dict(d["schema"][0]["properties"][1]))), "listed twice"),
    (contract_edit(lambda d: d["schema"][0]["properties"][2].update(
        customProperties=[{"property": "incremental", "value": True}])), "only one column may be incremental"),
    (contract_edit(lambda d: d["schema"][0]["properties"][0].update(required="very")), "schema.0.properties.0.required"),
]


@pytest.mark.parametrize(("document", "message"), CONTRACT_CASES)
def test_bad_contract_names_file_and_key(tmp_path, document, message):
    path = tmp_path / "police.deaths.odcs.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_contract("police.deaths", path=path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_contract():
    with pytest.raises(ConfigurationError, match="contracts/nope.odcs.yaml: no contract for feed 'nope'"):
        load_contract("nope")


def test_a_feed_on_a_known_transport_stays_a_short_config():
    for feed in SHIPPED:
        lines = [line for line in (FEEDS_DIR / f"{feed}.yaml").read_text(encoding="utf-8").splitlines() if line.strip()]
        assert len(lines) <= 40, f"{feed}.yaml has {len(lines)} lines"


def test_a_link_header_paging_config_loads(tmp_path):
    from connectors.config import LinkHeaderPaging

    document = edit(police, "rest.paging", {"style": "link_header", "size_param": "per_page", "page_size": 500})
    path = tmp_path / "police.deaths.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    paging = load_feed_file(path).rest.paging
    assert isinstance(paging, LinkHeaderPaging)
    assert (paging.size_param, paging.page_size, paging.rel, paging.max_pages) == ("per_page", 500, "next", 10_000)
