"""Feed configs: the short YAML in connectors/feeds/ that says how to reach one agency's feed.

One pydantic model per transport section (``rest``, ``filedrop``, ``database``); paging styles and
auth kinds are tagged unions. Unknown keys are errors. Values that are secrets must be references
(``env:NAME`` or ``secret:BLOCK``), resolved only when a pull starts.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

_REFERENCE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|secret:[A-Za-z0-9][A-Za-z0-9_-]*)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _reference(value: str) -> str:
    if not _REFERENCE.match(value):
        raise ValueError("must be a reference, env:NAME or secret:BLOCK (secrets are never written in configs)")
    return value


SecretRef = Annotated[str, Field(min_length=1)]

#: the tagged unions, by field name: their tag values appear in pydantic's error locations
UNION_TAGS: dict[str, frozenset[str]] = {}


def reference_name(ref: str) -> str:
    """What a person renews for a reference: the environment variable or the Prefect Secret block."""
    if ref.startswith("env:"):
        return ref[4:]
    if ref.startswith("secret:"):
        return f"the Prefect Secret block {ref[7:]}"
    return "the value in the feed config"


# --- auth -------------------------------------------------------------------------------------


class BearerAuth(_Strict):
    """A static token sent as ``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: SecretRef

    @field_validator("token")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _reference(value)


class ApiKeyAuth(_Strict):
    """A static key sent in a header."""

    type: Literal["api_key"]
    header: str = Field(min_length=1)
    key: SecretRef

    @field_validator("key")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _reference(value)


class OAuth2ClientCredentialsAuth(_Strict):
    """OAuth2 client credentials: a token fetched with HTTP Basic client id and secret, cached, refreshed on 401."""

    type: Literal["oauth2_client_credentials"]
    token_url: str = Field(min_length=1, description="absolute, or relative to base_url")
    client_id: SecretRef
    client_secret: SecretRef
    scope: str | None = None

    @field_validator("client_id", "client_secret")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _reference(value)


AuthConfig = Annotated[BearerAuth | ApiKeyAuth | OAuth2ClientCredentialsAuth, Field(discriminator="type")]
UNION_TAGS["auth"] = frozenset({"bearer", "api_key", "oauth2_client_credentials"})


# --- paging -----------------------------------------------------------------------------------


class CursorPaging(_Strict):
    """``?cursor=<next_cursor>&limit=N`` until the response's next cursor is null."""

    style: Literal["cursor"]
    cursor_param: str = "cursor"
    next_cursor: str = "next_cursor"
    limit_param: str = "limit"
    page_size: PositiveInt


class PageSizePaging(_Strict):
    """``?page=P&size=N``; the response's ``total`` says how many rows there are in all."""

    style: Literal["page_size"]
    page_param: str = "page"
    size_param: str = "size"
    first_page: int = Field(1, ge=0)
    page_size: PositiveInt
    total: str = "total"


class ChangedSincePaging(_Strict):
    """Keyset paging over (changed_at, key): ``?changed_since=T&changed_until=U&after=K&limit=N``."""

    style: Literal["changed_since"]
    since_param: str = "changed_since"
    until_param: str = "changed_until"
    after_param: str = "after"
    limit_param: str = "limit"
    page_size: PositiveInt
    cursor_field: str = Field(min_length=1, description="the record's change time, passed back as since")
    after_field: str | None = Field(None, description="the record's key passed back as after; default the contract key")
    has_more: str = "has_more"


class LinkHeaderPaging(_Strict):
    """RFC 8288 ``Link`` response headers: the first request carries the window and ``size_param=N``;
    each later one is the URL of the response's ``<url>; rel="next"`` link, as given, until a response
    has none. A next link must stay on the base_url's origin (scheme, host and port)."""

    style: Literal["link_header"]
    size_param: str = Field("limit", min_length=1)
    page_size: PositiveInt
    rel: str = Field("next", min_length=1, description="the link relation to follow")
    max_pages: PositiveInt = Field(10_000, description="a pull that would read more pages is stopped (a loop)")


PagingConfig = Annotated[
    CursorPaging | PageSizePaging | ChangedSincePaging | LinkHeaderPaging, Field(discriminator="style")
]
UNION_TAGS["paging"] = frozenset({"cursor", "page_size", "changed_since", "link_header"})


class WindowParams(_Strict):
    """The query parameters that carry the window's start and end."""

    start_param: str = Field(min_length=1)
    end_param: str = Field(min_length=1)


class RestConfig(_Strict):
    """A REST JSON endpoint."""

    base_url: str = Field(min_length=1, description="a URL or env:NAME")
    path: str
    records: str = Field(min_length=1, description="the response's key that holds the list of records")
    auth: AuthConfig | None = None
    paging: PagingConfig
    window: WindowParams | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("must start with / and carry no query string")
        return value

    @model_validator(mode="after")
    def _window_params(self) -> RestConfig:
        if self.paging.style != "changed_since" and self.window is None:
            raise ValueError(f"window: is required with paging style {self.paging.style}")
        return self


# --- file drop --------------------------------------------------------------------------------


class FileDropConfig(_Strict):
    """Files dropped into a folder, each taken once its done-marker is there."""

    directory: str = Field(min_length=1, description="a folder or env:NAME")
    pattern: str = Field(min_length=1, description="a file-name glob inside the folder, no path")
    format: Literal["csv", "xlsx"]
    encoding: str = Field("auto", description="auto, or a Python codec name (csv only)")
    delimiter: str = Field(",", min_length=1, max_length=1)
    sheet: str | None = None
    done_suffix: str = Field(".ok", min_length=1)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if (
            "/" in value
            or "\\" in value
            or ".." in value
            or PurePosixPath(value).is_absolute()
            or PureWindowsPath(value).is_absolute()
        ):
            raise ValueError("must be a file-name pattern inside the folder (no /, \\ or ..)")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        if value != "auto":
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError("must be auto or a known codec name") from None
        return value

    @field_validator("done_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        if "/" in value or "\\" in value:
            raise ValueError("must be a file-name suffix")
        return value

    @model_validator(mode="after")
    def _sheet(self) -> FileDropConfig:
        if self.format == "xlsx" and not self.sheet:
            raise ValueError("sheet: is required for xlsx")
        if self.format == "csv" and self.sheet:
            raise ValueError("sheet: only applies to xlsx")
        return self


# --- database ---------------------------------------------------------------------------------


class DatabaseConfig(_Strict):
    """A table or view read incrementally."""

    url: SecretRef = Field(description="env:NAME or secret:BLOCK holding a SQLAlchemy URL")
    relation: str = Field(min_length=1)
    db_schema: str | None = Field(None, alias="schema", description="the relation's schema, when not the default")
    incremental_column: str = Field(min_length=1)
    order_by: list[str] = Field(min_length=1)
    chunk_size: PositiveInt = 50_000

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _reference(value)


# --- what the matching stage keeps -------------------------------------------------------------

_NAME = r"^[a-z_][a-z0-9_]*$"


class NotNull(_Strict):
    """A boolean store column: whether the feed's column has a value (e.g. inpatient: a discharge date)."""

    not_null: str = Field(pattern=_NAME)


class UsccArea(_Strict):
    """The registration area (characters 3-8) of a unified social credit code column."""

    uscc_area: str = Field(pattern=_NAME)


class AccountNumber(_Strict):
    """A bank account column, kept as its token (the store column) and masked (``<store column>_masked``),
    never whole."""

    account_number: str = Field(pattern=_NAME)


class MonthNumber(_Strict):
    """A YYYY-MM column, kept as the month's number (year x 12 + month - 1), as the rules count months."""

    month: str = Field(pattern=_NAME)


class PersonToken(_Strict):
    """Another person's identity number column (a spouse's, say), kept as that person's token only: never
    whole, not masked, not in the identity vault (the person's own rows put them there)."""

    person_token: str = Field(pattern=_NAME)


Source = Annotated[str, Field(pattern=_NAME)] | NotNull | UsccArea | AccountNumber | MonthNumber | PersonToken


class MatchingConfig(_Strict):
    """What the matching stage keeps of this feed (docs/matching.md): its store table and, per store
    column, the feed column it comes from. ``id_number`` becomes the person's token, masked number
    and area (never kept whole; a column mapped to ``area`` is the area where it has a value);
    ``name`` goes to the identity vault only; columns that are not named are not kept."""

    table: str = Field(pattern=_NAME)
    columns: dict[Annotated[str, Field(pattern=_NAME)], Source] = Field(min_length=1)
    confirms: bool = Field(
        False, description="deaths table: a death this feed reports is confirmed on its own (the police's cancellation "
                           "of the household registration); from other feeds it takes two sources")

    @model_validator(mode="after")
    def _confirms(self) -> MatchingConfig:
        if self.confirms and self.table != "deaths":
            raise ValueError("confirms: only applies to the deaths table")
        return self

    def sources(self) -> list[str]:
        """Every feed column this section reads."""
        return [source_column(value) for value in self.columns.values()]


def source_column(value: Source) -> str:
    """The feed column a ``matching.columns`` value reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, NotNull):
        return value.not_null
    if isinstance(value, UsccArea):
        return value.uscc_area
    if isinstance(value, AccountNumber):
        return value.account_number
    if isinstance(value, PersonToken):
        return value.person_token
    return value.month


# --- the conformance suite ------------------------------------------------------------------


class ConformanceConfig(_Strict):
    """How the connector conformance suite (onboarding/conformance/) treats this feed."""

    skip: dict[Annotated[str, Field(pattern=_NAME)], Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict,
        description="a check that cannot apply to this agency -> the written reason (never skipped silently)",
    )


# --- the feed ---------------------------------------------------------------------------------


class FeedConfig(_Strict):
    """One agency feed: who serves it, its contract, its recipient stage and how to reach it."""

    feed: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    agency: str = Field(min_length=1)
    title: str = Field(min_length=1)
    contract: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    transport: Literal["rest", "filedrop", "database"]
    rest: RestConfig | None = None
    filedrop: FileDropConfig | None = None
    database: DatabaseConfig | None = None
    matching: MatchingConfig | None = None
    conformance: ConformanceConfig | None = None
    stream: bool = Field(
        False, description="read, check and seal the feed in chunks of FUNDX_CHUNK_ROWS rows (bounded memory; "
                           "for feeds of millions of rows)",
    )

    @model_validator(mode="after")
    def _one_transport(self) -> FeedConfig:
        if getattr(self, self.transport) is None:
            raise ValueError(f"{self.transport}: is required with transport {self.transport}")
        for name in ("rest", "filedrop", "database"):
            if name != self.transport and getattr(self, name) is not None:
                raise ValueError(f"{name}: does not apply to transport {self.transport}")
        return self

    @property
    def section(self) -> RestConfig | FileDropConfig | DatabaseConfig:
        """The transport's own section."""
        return getattr(self, self.transport)
