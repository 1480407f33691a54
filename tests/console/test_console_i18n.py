"""The console's languages (fundx/console/i18n.py): every message of the templates and pages has its Chinese in
fundx/console/locale/zh_CN/LC_MESSAGES/messages.po, the compiled .mo says the same as the .po, and each page rendered
in Chinese (the default) leaves no English message of a template on the page — checked on the real pages of a night
with a quarantined batch and of cases, and shown to catch English on the same pages rendered in English."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from console_helpers import INSPECTOR_A, PASSWORDS, STEWARD, SUPERVISOR, client_for, seed_cases

import fundx.console

CONSOLE = Path(fundx.console.__file__).parent
PO = CONSOLE / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
ROOT = CONSOLE.parents[1]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted(templates_only: bool = False) -> set[str]:
    """The messages pybabel extracts (babel.cfg, with make messages' keywords), now."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with open(ROOT / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    if templates_only:
        method_map = [(p, m) for p, m in method_map if m == "jinja2"]
    keywords = {**DEFAULT_KEYWORDS, "L": None, "N_": None}
    return {m[2] if isinstance(m[2], str) else m[2][0]
            for m in extract_from_dir(str(CONSOLE), method_map, options_map, keywords=keywords)}


def _po():
    from babel.messages.pofile import read_po

    with open(PO, "rb") as fp:
        return read_po(fp)


def test_every_message_has_its_chinese_with_the_same_placeholders():
    catalog = _po()
    extracted = _extracted()
    known = {m.id for m in catalog if m.id}
    assert extracted - known == set(), "messages without a catalogue entry: run make messages and translate them"
    assert known - extracted == set(), "catalogue entries no page uses any more: run make messages"
    for message in catalog:
        if not message.id:
            continue
        assert message.string and message.string.strip(), f"no Chinese for {message.id!r}"
        assert not message.fuzzy, f"fuzzy: {message.id!r}"
        assert sorted(PLACEHOLDER.findall(message.id)) == sorted(PLACEHOLDER.findall(message.string)), message.id
        assert not re.search(r"%(?!\(\w+\)s)", message.string.replace("%%", "")), f"a stray % in {message.id!r}"


def test_the_compiled_catalogue_says_what_the_po_says():
    from babel.messages.mofile import read_mo

    with open(MO, "rb") as fp:
        compiled = {m.id: m.string for m in read_mo(fp) if m.id}
    written = {m.id: m.string for m in _po() if m.id}
    assert compiled == written, "messages.mo is older than messages.po: run make messages (pybabel compile)"


class _Text(HTMLParser):
    """A page's visible text nodes and the attributes a person reads (title, aria-label, placeholder), without
    <code> (rule ids, feed names, masked values are data) and <head>."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("code", "head", "style", "datalist"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "aria-label", "placeholder") and value:
                self.nodes.append(value.strip())

    def handle_endtag(self, tag):
        if tag in ("code", "head", "style", "datalist"):
            self._skip = max(self._skip - 1, 0)

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.nodes.append(" ".join(data.split()))


def _english_left(html: str, messages: set[str]) -> list[str]:
    """The template messages (or their longer literal pieces) that a page shows untranslated."""
    parser = _Text()
    parser.feed(html)
    text = " ".join(parser.nodes)
    whole = {n.strip(" .:") for n in parser.nodes}
    left = []
    for message in messages:
        pieces = [p.strip(" :;,.()") for p in PLACEHOLDER.split(message)[::2]]
        alone = not PLACEHOLDER.search(message) and message.strip(" .:") in whole  # a whole text node
        inside = any(len(p.split()) >= 3 and p in text for p in pieces)  # a phrase of three words or more
        if alone or inside:
            left.append(message)
    return sorted(left)


@pytest.fixture(scope="module")
def pages(night):
    """The console's pages as a steward and as an inspector, each in the default language and in English."""
    from fundx.console.app import create_app
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    cases = seed_cases(ledger)
    app = create_app(ledger, home=night.home)
    urls = {
        STEWARD: ["/", "/failures", f"/failures/{night.batch_id}", f"/failures/{night.batch_id}/rows/1/unmask",
                  "/audit", "/failures/no-such-batch", "/nights/not-a-date", "/cases", f"/cases/{cases[0]}"],
        INSPECTOR_A: ["/cases", "/cases/district", "/cases/district?district=西湖区", "/cases/overdue",
                      f"/cases/{cases[0]}", f"/cases/{cases[2]}"],
        SUPERVISOR: ["/cases"],
    }
    shown: dict[str, list[tuple[str, str]]] = {"zh_CN": [], "en": []}
    for lang, seen in shown.items():
        anonymous = client_for(app, lang=None if lang == "zh_CN" else lang, follow_redirects=False)
        seen.append(("/login", anonymous.get("/login").text))
        for who, paths in urls.items():
            client = client_for(app, lang=None if lang == "zh_CN" else lang, follow_redirects=False)
            token = CSRF.search(client.get("/login").text).group(1)
            client.post("/login", data={"csrf": token, "name": who, "password": PASSWORDS[who], "next": "/"})
            for path in paths:
                answer = client.get(path)
                assert answer.status_code in (200, 404), (path, answer.status_code)
                seen.append((path, answer.text))
            if who == INSPECTOR_A:  # a refused step and a refused unmask reason: their pages too
                token = CSRF.search(client.get(f"/cases/{cases[0]}").text).group(1)
                answer = client.post(f"/cases/{cases[0]}/step", data={"csrf": token, "step": "accept"})
                assert answer.status_code == 403
                seen.append(("refused step", answer.text))
            if who == STEWARD:
                token = CSRF.search(client.get("/failures").text).group(1)
                answer = client.post(f"/failures/{night.batch_id}/rows/1/unmask", data={"csrf": token, "reason": "x"})
                assert answer.status_code == 400
                seen.append(("refused unmask", answer.text))
    return shown


def test_every_page_in_chinese_leaves_no_english_message_of_its_templates(pages):
    messages = _extracted(templates_only=True)
    for path, html in pages["zh_CN"]:
        assert '<html lang="zh-CN">' in html, path
        assert _english_left(html, messages) == [], path


def test_the_check_finds_english_on_the_same_pages_in_english(pages):
    messages = _extracted(templates_only=True)
    for path, html in pages["en"]:
        assert '<html lang="en">' in html, path
        assert _english_left(html, messages), f"{path}: the check would not see English"


def test_the_wheel_carries_the_catalogue(tmp_path):
    """An installed console finds its Chinese: setuptools' build_py (the step that fills a wheel) copies the
    catalogue, compiled and not, with the templates (pyproject.toml's package-data)."""
    import subprocess
    import sys

    egg = tmp_path / "egg"  # a fresh egg-info: the checkout's own remembers files from earlier builds
    egg.mkdir()
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "--quiet",
                            "egg_info", "--egg-base", str(egg), "build_py", "--build-lib", str(tmp_path / "lib")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    console = tmp_path / "lib" / "fundx" / "console"
    shipped = {p.relative_to(console).as_posix() for p in console.rglob("*") if p.is_file()}
    assert {"locale/zh_CN/LC_MESSAGES/messages.mo", "locale/zh_CN/LC_MESSAGES/messages.po", "locale/messages.pot",
            "templates/case.html", "templates/cases.html", "i18n.py", "pages/cases.py"} <= shipped
    assert (console / "locale/zh_CN/LC_MESSAGES/messages.mo").read_bytes() == MO.read_bytes()
