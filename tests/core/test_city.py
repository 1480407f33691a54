"""The deployment's city as configuration: the shipped city files, FUNDX_CITY, and the routing of
inspection orders by district (never the validity of a number)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fundx.core.areacodes import area_table, is_known_area_code
from fundx.core.city import CITIES_DIR, load_city, shipped_cities
from fundx.core.errors import ConfigurationError
from fundx.core.settings import reload_settings


@pytest.fixture
def city_env(monkeypatch: pytest.MonkeyPatch):
    """Set FUNDX_CITY for one test (settings reloaded before and after)."""

    def use(value: str) -> None:
        monkeypatch.setenv("FUNDX_CITY", value)
        reload_settings()

    yield use
    monkeypatch.delenv("FUNDX_CITY", raising=False)
    reload_settings()


def test_the_shipped_cities() -> None:
    assert shipped_cities() == ["hangzhou", "shenyang"]
    hangzhou, shenyang = load_city("hangzhou"), load_city("shenyang")
    assert (hangzhou.name, hangzhou.code, len(hangzhou.districts)) == ("杭州市", "3301", 13)
    assert (shenyang.name, shenyang.code, len(shenyang.districts)) == ("沈阳市", "2101", 13)
    # Shenyang's districts as GB/T 2260 has them (python-stdnum's table): codes and current names
    table = area_table()
    for d in shenyang.districts:
        assert table[int(d.code)].names[-1] == d.name, d.code
        assert table[int(d.code)].last is None, d.code  # in use
    assert {d.code for d in shenyang.districts} == {
        "210102", "210103", "210104", "210105", "210106", "210111", "210112", "210113", "210114", "210115",
        "210123", "210124", "210181"}
    # every code a shipped city file names, current or former, is in the national table
    for city in (hangzhou, shenyang):
        for d in city.districts:
            assert all(is_known_area_code(c) for c in (d.code, *d.formerly)), (city.key, d.code)
        assert city.has_sandbox


def test_routing_by_district_and_former_code() -> None:
    hangzhou = load_city("hangzhou")
    assert hangzhou.district_of("330106").name == "西湖区"
    assert hangzhou.district_of("330103").name == "拱墅区"  # 下城区, merged in 2021
    assert hangzhou.district_of("330181").code == "330109"  # 萧山市 -> 萧山区
    assert hangzhou.district_of("210102") is None  # issued in Shenyang: no district of Hangzhou
    shenyang = load_city("shenyang")
    assert shenyang.district_of("210122").name == "辽中区"  # 辽中县 until 2016
    assert shenyang.district_of("210102").office == "和平区社会保险经办机构"
    assert shenyang.district_named("浑南区").code == "210112"


def test_orders_follow_the_configured_city(city_env) -> None:
    from matching import orders as mo

    city_env("hangzhou")
    assert (mo.district_of("330103"), mo.route("330103")) == ("拱墅区", "330105")
    assert (mo.district_of("210102"), mo.route("210102")) == ("外地 210102", "210102")
    assert mo.area_of("西湖区") == "330106" and mo.area_of("外地 210102") == "210102"
    city_env("shenyang")
    assert (mo.district_of("210102"), mo.district_of("210122"), mo.route("210122")) == ("和平区", "辽中区", "210115")
    assert mo.district_of("330106") == "外地 330106"
    assert mo.area_of("沈河区") == "210103" and mo.area_of("西湖区") is None
    assert "和平区" in mo.district_names()


def test_a_city_file_by_path(city_env, tmp_path: Path) -> None:
    document = yaml.safe_load((CITIES_DIR / "shenyang.yaml").read_text(encoding="utf-8"))
    document["city"] = "沈阳市（测试）"
    path = tmp_path / "my-city.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    city_env(str(path))
    from fundx.core.city import deployment_city

    assert deployment_city().name == "沈阳市（测试）"


def _broken(tmp_path: Path, change) -> str:
    document = yaml.safe_load((CITIES_DIR / "hangzhou.yaml").read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["districts"][0].update(code="330199"), "districts.0.code: 330199 is no county-level code"),
    (lambda d: d["districts"][0].update(code="210102"), "districts.0.code: 210102 is not under the city's code 3301"),
    (lambda d: d["districts"][1]["formerly"].append("330102"), "districts.1.formerly.2: 330102 is listed twice"),
    (lambda d: d["districts"][0].pop("office"), "districts.0.office: Field required"),
    (lambda d: d.update(mayor="x"), "mayor: Extra inputs are not permitted"),
    (lambda d: d["sandbox"]["districts"].pop("330106"), "sandbox.districts: must describe exactly the districts"),
])
def test_a_broken_city_file_is_named(tmp_path: Path, change, message: str) -> None:
    path = _broken(tmp_path, change)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        load_city(path)


def test_an_unknown_city_stops_at_start_up(city_env) -> None:
    with pytest.raises(ConfigurationError, match="FUNDX_CITY: .*no city file 'atlantis'.*hangzhou, shenyang"):
        city_env("atlantis")
