"""What the readers of a dropped file share: the feed they read for, the file's header checked against
the contract, and the agency's headers renamed to the contract's logical names.

A reader (:mod:`connectors.dropcsv`, :mod:`connectors.dropxlsx`) reads one file's bytes for its
connector (:class:`connectors.filedrop.FileDropConnector`); the connector finds the files, checks
them against their done-markers and numbers them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import pandas as pd

from connectors.config import FeedConfig, FileDropConfig
from contracts import Contract
from fundx.core.errors import DataError
from fundx.core.settings import Settings


class DropFeed(Protocol):
    """What a reader needs of its connector (a :class:`connectors.filedrop.FileDropConnector`)."""

    feed: FeedConfig
    contract: Contract
    settings: Settings
    config: FileDropConfig

    @property
    def name(self) -> str: ...

    def check_columns(self, present: Iterable[str], *, where: str = "", physical: bool = True) -> None: ...


class DropFileReader:
    """Reads one kind of dropped file into a frame of the contract's logical columns, every value text."""

    def __init__(self, connector: DropFeed) -> None:
        self.connector = connector

    @property
    def name(self) -> str:
        """The feed's name, as messages give it."""
        return self.connector.name

    @property
    def feed(self) -> FeedConfig:
        return self.connector.feed

    @property
    def contract(self) -> Contract:
        return self.connector.contract

    @property
    def settings(self) -> Settings:
        return self.connector.settings

    @property
    def config(self) -> FileDropConfig:
        return self.connector.config

    def _header(self, names: list[str], name: str) -> list[str]:
        """A CSV file's header, checked: not wider than FUNDX_FILE_MAX_COLUMNS, no contract column twice."""
        limit = self.settings.file_max_columns
        if len(names) > limit:
            raise DataError(
                f"{name}: its header has {len(names):,} columns, more than FUNDX_FILE_MAX_COLUMNS={limit:,}; "
                "the file was not read", feed=self.name,
                action=f"ask {self.feed.agency} what it sent (the contract has {len(self.contract.columns)} columns), "
                       "or raise FUNDX_FILE_MAX_COLUMNS",
            )
        cleaned = [h.strip().lstrip("\ufeff") for h in names]
        twice = sorted({h for h in cleaned if cleaned.count(h) > 1 and h in self.contract.physical_to_logical})
        if twice:
            raise DataError(f"{name}: its header names the column(s) {', '.join(twice)} more than once",
                            feed=self.name, action=f"ask {self.feed.agency} which column is meant and to resend the file")
        return names

    def _rename(self, frame: pd.DataFrame, name: str) -> pd.DataFrame:
        """The frame's agency headers renamed to logical names; columns the contract lacks dropped."""
        headers = [str(h).strip().lstrip("\ufeff") for h in frame.columns]
        frame.columns = headers
        self.connector.check_columns(headers, where=name)
        mapping = {p: n for p, n in self.contract.physical_to_logical.items() if p in headers}
        return frame.loc[:, list(mapping)].rename(columns=mapping)


def too_many_cells(name: str, feed: str, cells: int, limit: int) -> DataError:
    """The error for a file read whole that holds more cells than FUNDX_FILE_MAX_CELLS."""
    return DataError(
        f"{name} holds {cells:,} cells, more than FUNDX_FILE_MAX_CELLS={limit:,} for a file read whole; "
        "it was not read", feed=feed,
        action="stream the feed (stream: true in its config: any size in bounded memory), split the file, "
               "or raise FUNDX_FILE_MAX_CELLS",
    )
