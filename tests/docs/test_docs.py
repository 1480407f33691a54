"""The documentation stays true: generated pages current, every setting documented, the site builds strict.

The generated pages (docs/reference/cli.md, docs/reference/settings.md, and the site's copies of README.md
and SECURITY.md) come from tools/docs_refs.py; `make docs-refs` rewrites them. The site is built with
`mkdocs build --strict` (mkdocs.yml), which fails on a broken link or anchor between pages.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_docs_refs():
    spec = importlib.util.spec_from_file_location("docs_refs", ROOT / "tools" / "docs_refs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_refs"] = module
    spec.loader.exec_module(module)
    return module


refs = _load_docs_refs()


def test_generated_pages_are_current():
    stale = [str(path.relative_to(ROOT)) for path in refs.stale()]
    assert not stale, f"stale generated docs: {', '.join(stale)}; run `make docs-refs` and commit them"


def test_a_stale_page_is_caught(tmp_path, monkeypatch):
    """The staleness check can fail: a committed copy edited by hand, or a missing one, is named."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    monkeypatch.setattr(refs, "DOCS", docs)
    assert refs.stale() == []
    edited = docs / "reference" / "settings.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("| 250,000 |", "| 100,000 |"), encoding="utf-8")
    (docs / "security.md").unlink()
    assert sorted(refs.stale()) == sorted([edited, docs / "security.md"])


def test_every_fundx_variable_the_code_reads_is_documented():
    page = (ROOT / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(FUNDX_[A-Z0-9_]+)` \|", page, re.MULTILINE))
    missing = {name: files for name, files in refs.code_variables().items()
               if name not in documented and name not in refs.NOT_SETTINGS}
    assert not missing, (
        "FUNDX_* variables in the code but not in docs/reference/settings.md (give them a Field(description=...) "
        "in a settings class, or add them to DIRECT_VARIABLES or NOT_SETTINGS in tools/docs_refs.py; then "
        f"`make docs-refs`): {missing}")


def test_variable_scan_finds_names_not_prefixes_or_identifiers():
    planted = (
        'PREFIX = "FUNDX_"\n'
        'KEYS = "FUNDX_KEYS_"\n'
        'ID_FUNDX_MANIFEST = "2.25.1"\n'  # an identifier, not a string: not a variable
        '# FUNDX_IN_A_COMMENT\n'
        'value = os.environ.get("FUNDX_NEW_SETTING")\n'
        'message = "set FUNDX_OTHER_THING=1 and retry"\n'
    )
    assert refs.variables_in(planted) == {"FUNDX_NEW_SETTING", "FUNDX_OTHER_THING"}


def test_direct_variables_are_still_read_where_the_page_says():
    for var in refs.DIRECT_VARIABLES:
        source = (ROOT / var.read_in).read_text(encoding="utf-8")
        assert var.name in source, f"{var.name} is no longer in {var.read_in}: update DIRECT_VARIABLES in tools/docs_refs.py"


def test_readme_is_short_opens_with_the_two_commands_and_stays_inside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    for path in [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "DESIGN.md" not in text, f"{path.relative_to(ROOT)} points outside the repository"


def test_a_link_the_site_cannot_follow_is_refused(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("see [the code](fundx/cli/__init__.py) and [ops](docs/operations.md#logs)\n",
                                        encoding="utf-8")
    monkeypatch.setattr(refs, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="fundx/cli/__init__.py"):
        refs.site_copy("README.md")
    (tmp_path / "README.md").write_text("[ops](docs/operations.md#logs), [security](SECURITY.md), [x](https://x.org)\n"
                                        "text\n- a list right after a paragraph\n", encoding="utf-8")
    copy = refs.site_copy("README.md")
    assert "[ops](operations.md#logs), [security](security.md), [x](https://x.org)\ntext\n\n- a list" in copy


@pytest.mark.timeout(180)
def test_site_builds_strict_and_every_list_renders(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed in this environment (make venv installs the dev extras)")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    # Python-Markdown starts a list only after a blank line; without one the items render as one paragraph
    flat = []
    for page in sorted(site.rglob("index.html")):
        html = page.read_text(encoding="utf-8")
        article = html[html.find("<article"):html.find("</article>")]
        flat += [f"{page.relative_to(site)}: {p[:80]!r}" for p in re.findall(r"<p>(.*?)</p>", article, re.S)
                 if re.search(r"\n\s*(?:[-*]|\d+\.) ", p)]
    assert not flat, "lists rendered as paragraphs (add a blank line before the list):\n" + "\n".join(flat)
