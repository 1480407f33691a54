"""The deployment's city: its districts, the social-insurance office that pays in each, and what
the sandbox simulates there. Configuration, never code.

A city file (YAML) is chosen by the setting ``FUNDX_CITY``: the name of a file shipped in
``fundx/core/cities/`` (``hangzhou``, the sandbox's; ``shenyang``) or a path to one. It lists the
county-level districts in use (GB/T 2260 code and name), the office that pays benefits in each
and the retired codes whose holders each district now serves (``formerly``). The districts only
route work (which district's office gets an inspection order); they never decide whether an
identity number is valid: that is the national table's job (:func:`fundx.core.areacodes.known_areas`),
since a city's residents hold numbers first issued in every province.

The ``sandbox`` part (population weights, funeral homes, police stations, religious venues,
prisons) is for the simulated agencies only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fundx.core.errors import ConfigurationError

CITIES_DIR = Path(__file__).resolve().parent / "cities"
DEFAULT_CITY = "hangzhou"
_CODE = r"^[1-9][0-9]{5}$"


class _District(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=_CODE)
    name: str = Field(min_length=1)
    office: str = Field(min_length=1)
    formerly: list[str] = Field(default_factory=list)


class _SandboxDistrict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    population: float = Field(gt=0)
    funeral_home: str = Field(min_length=1)
    police_stations: list[str] = Field(min_length=1)


class _Sandbox(BaseModel):
    model_config = ConfigDict(extra="forbid")
    districts: dict[str, _SandboxDistrict]
    venues: list[str] = Field(min_length=1)
    prisons: list[str] = Field(min_length=1)
    womens_prison: str = Field(min_length=1)


class _CityFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(min_length=1)
    short: str = Field(min_length=1)
    province: str = Field(min_length=1)
    code: str = Field(pattern=r"^[1-9][0-9]{3}$")
    districts: list[_District] = Field(min_length=1)
    sandbox: _Sandbox | None = None


@dataclass(frozen=True)
class SandboxDistrict:
    """What the simulated agencies know of a district (synthetic)."""

    population: float
    funeral_home: str
    police_stations: tuple[str, ...]


@dataclass(frozen=True)
class District:
    """A county-level district of the city: its code and name, the office paying in it, and the
    retired codes whose holders it serves (``formerly``)."""

    code: str
    name: str
    office: str
    formerly: tuple[str, ...] = ()
    sandbox: SandboxDistrict | None = None


@dataclass(frozen=True)
class City:
    """A deployment's city, read from its file (:func:`load_city`)."""

    key: str  # the file's stem (hangzhou)
    name: str  # 杭州市
    short: str  # 杭州
    province: str
    code: str  # the prefecture's 4-digit GB/T 2260 prefix (3301)
    districts: tuple[District, ...]
    venues: tuple[str, ...] = ()
    prisons: tuple[str, ...] = ()
    womens_prison: str = ""
    source: str = ""

    def district_of(self, area: str) -> District | None:
        """The district serving an area code (its own code, or one it was formerly under); None outside the city."""
        return _routes(self).get(str(area))

    def district_named(self, name: str) -> District | None:
        """The district of that name, if any."""
        return next((d for d in self.districts if d.name == name), None)

    @property
    def has_sandbox(self) -> bool:
        """Whether the file describes the simulated agencies too."""
        return all(d.sandbox is not None for d in self.districts) and bool(self.venues)


@lru_cache(maxsize=16)
def _routes(city: City) -> dict[str, District]:
    out: dict[str, District] = {}
    for d in city.districts:
        out.update(dict.fromkeys(d.formerly, d))
    out.update({d.code: d for d in city.districts})  # a code in use is its own district's
    return out


def city_path(ref: str) -> Path:
    """The file a FUNDX_CITY value names: a shipped city (``hangzhou``) or a path to a YAML file."""
    ref = str(ref).strip()
    shipped = CITIES_DIR / f"{ref}.yaml"
    if ref and "/" not in ref and "\\" not in ref and not ref.endswith((".yaml", ".yml")):
        return shipped
    return Path(ref).expanduser()


def shipped_cities() -> list[str]:
    """The cities shipped with fundx (file stems of fundx/core/cities/*.yaml)."""
    return sorted(p.stem for p in CITIES_DIR.glob("*.yaml"))


@lru_cache(maxsize=8)
def load_city(ref: str = DEFAULT_CITY) -> City:
    """A city file, checked; errors name the file and the key (ConfigurationError)."""
    path = city_path(ref)
    where = str(path) if path.parent != CITIES_DIR else f"fundx/core/cities/{path.name}"
    if not path.is_file():
        raise ConfigurationError(
            f"FUNDX_CITY={ref}: no city file {where}",
            action=f"use a shipped city ({', '.join(shipped_cities())}) or the path to a city YAML file")
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise ConfigurationError(f"{where}: not a readable YAML file") from None
    try:
        raw = _CityFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise ConfigurationError(f"{where}: {key}: {first['msg']} ({exc.error_count()} problem(s))") from None
    return _city(raw, path.stem, where)


def _city(raw: _CityFile, key: str, where: str) -> City:
    from fundx.core.areacodes import is_known_area_code

    def fail(field: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{where}: {field}: {message}")

    seen: dict[str, str] = {}
    for i, d in enumerate(raw.districts):
        for j, code in enumerate([d.code, *d.formerly]):
            field = f"districts.{i}.code" if j == 0 else f"districts.{i}.formerly.{j - 1}"
            if not code.startswith(raw.code):
                raise fail(field, f"{code} is not under the city's code {raw.code}")
            if not is_known_area_code(code):
                raise fail(field, f"{code} is no county-level code of GB/T 2260 (fundx/core/areacodes.py area_table)")
            if code in seen:
                raise fail(field, f"{code} is listed twice (also {seen[code]})")
            seen[code] = field
    sandbox = raw.sandbox
    if sandbox is not None:
        extra = set(sandbox.districts) - {d.code for d in raw.districts}
        missing = [d.code for d in raw.districts if d.code not in sandbox.districts]
        if extra or missing:
            raise fail("sandbox.districts", f"must describe exactly the districts (missing {missing}, unknown {sorted(extra)})")
    districts = tuple(
        District(d.code, d.name, d.office, tuple(d.formerly),
                 None if sandbox is None else SandboxDistrict(
                     sandbox.districts[d.code].population, sandbox.districts[d.code].funeral_home,
                     tuple(sandbox.districts[d.code].police_stations)))
        for d in raw.districts)
    return City(key=key, name=raw.city, short=raw.short, province=raw.province, code=raw.code, districts=districts,
                venues=tuple(sandbox.venues) if sandbox else (), prisons=tuple(sandbox.prisons) if sandbox else (),
                womens_prison=sandbox.womens_prison if sandbox else "", source=where)


def deployment_city() -> City:
    """The city of this deployment: the file FUNDX_CITY names (default hangzhou)."""
    from fundx.core.settings import get_settings

    return load_city(get_settings().city)
