"""The feeds the exchange knows, derived from the feed configs alone: one place to ask.

Onboarding a feed is its config (``connectors/feeds/<feed>.yaml``, or the folder FUNDX_FEEDS_DIR names)
and its contract. Everything that enumerates feeds — the night, the stage list (and so the stages'
keys), the matching stage's tables, the sandbox's agencies, the conformance suite, the tests'
parametrisation — asks :func:`registry` instead of keeping a list of its own:

    reg = registry()
    reg.names                   # every feed, sorted
    reg.agencies                # agency -> its feeds
    reg.transports              # agency -> the transports its feeds use
    reg.stages                  # the stages the feeds deliver to, sorted
    reg.tables                  # matching store table -> the stage whose store keeps it

It is read again whenever a feed config or contract file changes (or the folders are moved). A config
that does not load (a scaffolded one with TODOs left, say) is in ``broken`` with its error, and in
nothing derived: it breaks its own feed, never the others or the stage list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from connectors import feed_names, feed_path, feeds_dir, load_feed
from connectors.config import FeedConfig
from contracts import contract_path
from fundx.core.errors import ConfigurationError

__all__ = ["Registry", "registry"]


@dataclass(frozen=True)
class Registry:
    """Every configured feed's validated config, and what follows from them."""

    feeds: Mapping[str, FeedConfig] = field(default_factory=dict)
    #: feed -> why its config does not load (ConfigurationError's message: the file and the key)
    broken: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every feed whose config loads, sorted."""
        return tuple(sorted(self.feeds))

    @cached_property
    def all_names(self) -> tuple[str, ...]:
        """Every configured feed, broken ones too, sorted."""
        return tuple(sorted({*self.feeds, *self.broken}))

    def feed(self, name: str) -> FeedConfig:
        """One feed's config (ConfigurationError naming the known feeds for another name)."""
        config = self.feeds.get(name)
        if config is None and name in self.broken:
            raise ConfigurationError(self.broken[name], feed=name)
        if config is None:
            raise ConfigurationError(f"no config for feed {name!r} (known: {', '.join(self.names) or 'none'})",
                                     feed=name, action=f"write {feeds_dir() / f'{name}.yaml'}")
        return config

    @cached_property
    def agencies(self) -> dict[str, tuple[str, ...]]:
        """agency -> its feeds, both sorted."""
        out: dict[str, list[str]] = {}
        for name in self.names:
            out.setdefault(self.feeds[name].agency, []).append(name)
        return {agency: tuple(out[agency]) for agency in sorted(out)}

    def agency_of(self, feed: str) -> str:
        return self.feed(feed).agency

    @cached_property
    def transports(self) -> dict[str, tuple[str, ...]]:
        """agency -> the transports its feeds use (one, for every shipped agency)."""
        return {agency: tuple(sorted({self.feeds[f].transport for f in feeds}))
                for agency, feeds in self.agencies.items()}

    def on_transport(self, transport: str) -> tuple[str, ...]:
        """The feeds pulled over ``transport`` (rest, filedrop or database)."""
        return tuple(f for f in self.names if self.feeds[f].transport == transport)

    @cached_property
    def stages(self) -> tuple[str, ...]:
        """The stages the feeds deliver to (their ``stage:``), sorted: the recipients that have keys and a store."""
        return tuple(sorted({config.stage for config in self.feeds.values()}))

    def stage_of(self, feed: str) -> str:
        return self.feed(feed).stage

    def feeds_of(self, stage: str) -> tuple[str, ...]:
        """The feeds delivered to ``stage``."""
        return tuple(f for f in self.names if self.feeds[f].stage == stage)

    @cached_property
    def tables(self) -> dict[str, str]:
        """Matching store table -> the stage whose store keeps it, from the feeds' ``matching:`` sections.

        ConfigurationError when two feeds put one table into the stores of two stages (the rules
        read a table from one store)."""
        out: dict[str, tuple[str, str]] = {}
        for name in self.names:
            config = self.feeds[name]
            if config.matching is None:
                continue
            table = config.matching.table
            if table in out and out[table][0] != config.stage:
                other_stage, other = out[table]
                raise ConfigurationError(
                    f"{name}: matching.table {table!r} is kept by stage {other_stage} for {other}, but {name} "
                    f"delivers to {config.stage}", feed=name,
                    action=f"deliver {name} to {other_stage}, or name another table in {feed_path(name)}")
            out.setdefault(table, (config.stage, name))
        return {table: stage for table, (stage, _) in sorted(out.items())}


def registry() -> Registry:
    """The registry of the configured feeds (read again when a config or contract file changes)."""
    names = tuple(feed_names())
    return _read(str(feeds_dir()), tuple(_stamp(feed_path(n)) + _stamp(contract_path(n)) for n in names))


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return str(path), 0, 0  # load_feed says what is missing
    return str(path), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)
def _read(folder: str, stamps: tuple[tuple[object, ...], ...]) -> Registry:
    feeds: dict[str, FeedConfig] = {}
    broken: dict[str, str] = {}
    for stamp in stamps:
        name = Path(str(stamp[0])).name[: -len(".yaml")]
        try:
            feeds[name] = load_feed(name)
        except ConfigurationError as exc:
            broken[name] = str(exc)
    return Registry(feeds, broken)
