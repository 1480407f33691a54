"""Connectors: one base per transport (REST, file drop, database) and one short config per feed.

``connectors/feeds/<feed>.yaml`` says how to reach a feed; :func:`connector_for` gives the
transport's connector for it, whose ``extract(window)`` returns a :class:`connectors.base.Pull`.
An agency on a known transport is a config, never a class.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from connectors.config import UNION_TAGS, ChangedSincePaging, FeedConfig
from contracts import Contract, describe_validation, display_path, load_contract
from fundx.core.errors import ConfigurationError
from fundx.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from connectors.base import Connector

#: the shipped feed configs; FUNDX_FEEDS_DIR points the exchange at another folder (:func:`feeds_dir`)
FEEDS_DIR = Path(__file__).resolve().parent / "feeds"

#: transport name -> "module:class"; imported only when a feed on that transport is pulled
TRANSPORTS: dict[str, str] = {
    "rest": "connectors.rest:RestConnector",
    "filedrop": "connectors.filedrop:FileDropConnector",
    "database": "connectors.database:DatabaseConnector",
}

__all__ = [
    "FEEDS_DIR", "FeedConfig", "build_connector", "connector_for", "feed_names", "feed_path", "feeds_dir", "load_feed",
    "load_feed_file",
]


def feeds_dir() -> Path:
    """The folder of the feed configs: FUNDX_FEEDS_DIR, else the shipped connectors/feeds."""
    return get_settings().feeds_dir or FEEDS_DIR


def feed_path(feed: str) -> Path:
    """Where the config of ``feed`` lives."""
    return feeds_dir() / f"{feed}.yaml"


def feed_names() -> list[str]:
    """Every configured feed, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in feeds_dir().glob("*.yaml"))


def load_feed(feed: str) -> FeedConfig:
    """The validated config of ``feed``; errors are ConfigurationError naming the file and key path."""
    return _load_feed(feed)[0]


def _load_feed(feed: str) -> tuple[FeedConfig, Contract]:
    path = feed_path(feed)
    if not path.is_file():
        known = ", ".join(feed_names()) or "none"
        error = ConfigurationError(
            f"{display_path(path)}: no config for feed {feed!r} (known: {known})",
            action=f"write {display_path(path)} or use one of: {known}",
        )
        error.feed = feed
        raise error
    return _load_feed_file(path)


def load_feed_file(path: Path) -> FeedConfig:
    """A feed config read from ``path`` (named ``<feed>.yaml``), checked against its contract."""
    return _load_feed_file(path)[0]


def _load_feed_file(path: Path) -> tuple[FeedConfig, Contract]:
    """A feed config read from ``path`` and checked against its contract, and that contract."""
    where = display_path(path)
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.stem

    def fail(message: str) -> ConfigurationError:
        error = ConfigurationError(f"{where}: {message}")
        error.feed = stem
        return error

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise fail("not valid YAML" + (f" (line {mark.line + 1})" if mark is not None else "")) from None
    except OSError as exc:
        raise fail(f"cannot be read ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise fail("must be a mapping of keys (feed, agency, transport, ...)")
    try:
        config = FeedConfig.model_validate(document)
    except ValidationError as exc:
        raise fail("; ".join(describe_validation(exc, union_tags=UNION_TAGS))) from None
    if config.feed != stem:
        raise fail(f"feed: must be the file's name {stem!r}")
    try:
        contract = load_contract(config.contract)
    except ConfigurationError as exc:
        raise fail(f"contract: {exc}") from None
    problem = _mismatch(config, contract)
    if problem:
        raise fail(problem)
    return config, contract


def _mismatch(config: FeedConfig, contract: Contract) -> str | None:
    """The first place where a config names something its contract does not have."""
    names = set(contract.names)
    if config.rest is not None and isinstance(config.rest.paging, ChangedSincePaging):
        paging = config.rest.paging
        if paging.cursor_field not in names:
            return f"rest.paging.cursor_field: {paging.cursor_field!r} is not a column of contract {contract.feed}"
        if paging.after_field is not None and paging.after_field not in names:
            return f"rest.paging.after_field: {paging.after_field!r} is not a column of contract {contract.feed}"
        if paging.after_field is None and len(contract.key) != 1:
            return "rest.paging.after_field: is required when the contract's key has several columns"
    if config.matching is not None:
        for name in config.matching.sources():
            if name not in names:
                return f"matching.columns: {name!r} is not a column of contract {contract.feed}"
    if config.database is not None:
        db = config.database
        if db.incremental_column not in names:
            return f"database.incremental_column: {db.incremental_column!r} is not a column of contract {contract.feed}"
        if contract.incremental and db.incremental_column != contract.incremental:
            return f"database.incremental_column: must be the contract's incremental column {contract.incremental!r}"
        for i, name in enumerate(db.order_by):
            if name not in names:
                return f"database.order_by.{i}: {name!r} is not a column of contract {contract.feed}"
    return None


def connector_for(feed: str, settings: Settings | None = None) -> Connector:
    """The connector that pulls ``feed``, built from its config and contract (each read once)."""
    return _build(*_load_feed(feed), settings)


def build_connector(config: FeedConfig, settings: Settings | None = None) -> Connector:
    """The transport's connector for an already validated config (tests use it with smaller pages)."""
    return _build(config, load_contract(config.contract), settings)


def _build(config: FeedConfig, contract: Contract, settings: Settings | None) -> Connector:
    module, _, name = TRANSPORTS[config.transport].partition(":")
    cls: Any = getattr(import_module(module), name)
    return cls(config, contract, settings or get_settings())
