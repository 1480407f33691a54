"""The docs' generated pages: the CLI reference, the settings reference, and the copies of README and SECURITY.

    .venv/bin/python tools/docs_refs.py --write     # make docs-refs: rewrite every generated page
    .venv/bin/python tools/docs_refs.py --check     # exit 1 naming each stale page (tests/docs/test_docs.py does the same)

What each page is made from (the only module paths this file knows; update them here when code moves):

- ``docs/reference/cli.md``: the Typer app :data:`CLI_APP`, walked with Typer's own help records (what
  ``fundx COMMAND --help`` prints), one section per command group and command;
- ``docs/reference/settings.md``: every pydantic ``BaseSettings`` class in :data:`SETTINGS_CLASSES` (name,
  default, accepted values, the Field's description), the variables read straight from the environment
  (:data:`DIRECT_VARIABLES`, each checked to still occur in its module), and the ``env:`` references of the
  feed configs in :data:`FEEDS_DIR`;
- ``docs/index.md`` and ``docs/security.md``: README.md and SECURITY.md, which stay at the repository's root
  where GitHub shows them, with their links rewritten for the site (mkdocs reads only ``docs/``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFRESH = "make docs-refs"

#: the CLI: module and attribute of the Typer app, and the program's name
CLI_APP = ("fundx.cli", "app", "fundx")

#: (module, class, section title): each BaseSettings of the code, in the order the page shows them
SETTINGS_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("fundx.core.settings", "Settings", "The exchange"),
    ("fundx.crypto.keys", "KeySettings", "Keys and certificates"),
    ("fundx.notify.config", "NotifySettings", "Notices"),
    ("fundx.console.settings", "ConsoleSettings", "The stewards' console"),
    ("matching.lifecycle", "CaseSettings", "Inspection cases"),
    ("deployments.settings", "ServeSettings", "`make serve`"),
)


@dataclass(frozen=True)
class Direct:
    """A variable the code reads from os.environ itself rather than through a settings class."""

    name: str
    default: str
    meaning: str
    read_in: str  # a file (from the repository's root) that must still mention the name


#: the user settings read straight from the environment (tests/docs/test_docs.py checks that every FUNDX_*
#: name in the code is documented on the page, and that each of these is still read where it says)
DIRECT_VARIABLES: tuple[Direct, ...] = (
    Direct("FUNDX_TASK_RUNNER", "local",
           "where a streamed feed's chunks are checked and its parts sealed: local, processes, processes:N, "
           "dask, dask:N, dask://host:port (loopback only), dask+tls://host:port (see Large feeds)",
           "fundx/exchange/runners.py"),
    Direct("FUNDX_STEWARD", "the operating-system user",
           "who runs the administrative commands no account can (console add-user and remove-user, ledger upgrade): "
           "the name audited for them. Decisions on data and cases need a console account (--account)",
           "fundx/cli/common.py"),
    Direct("FUNDX_CONSOLE_PASSWORD", "—",
           "the password `fundx console add-user` takes instead of asking (scripts and tests only)",
           "fundx/cli/console.py"),
    Direct("FUNDX_SERVE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres",
           "make serve-pg: the PostgreSQL server and user; its database is the one connected to when creating "
           "the two below", "deployments/serve_setup.py"),
    Direct("FUNDX_SERVE_PG_PREFECT_DB", "fundx_prefect", "make serve-pg: Prefect's database", "deployments/serve_setup.py"),
    Direct("FUNDX_SERVE_PG_LEDGER_DB", "fundx_ledger", "make serve-pg: the ledger's database", "deployments/serve_setup.py"),
    Direct("FUNDX_AUDIT_STRICT", "—",
           "1: make audit fails when a pin could not be checked (default: it says so and passes)", ".ci/audit.py"),
    Direct("FUNDX_BENCH_DATA", "bench/data",
           "where make bench keeps the data it generates (about 2.4 GB for a full run)", "bench/scale_data.py"),
)

#: FUNDX_* names in the code that are not settings of a deployment, with the reason
NOT_SETTINGS: dict[str, str] = {
    "FUNDX_TEST_KILL_AT": "a test hook: the chaos night and the kill tests stop a run at a named point",
    "FUNDX_CONFORMANCE_PROBE_SECRET": "set by the conformance suite itself for its secrets check",
    "FUNDX_CONFORMANCE_PROBE_URL": "set by the conformance suite itself for its secrets check",
    "FUNDX_PEERS_PYTHON": "make bench-peers: the side environment's Python, when not .venv-peers/bin/python",
}

#: the feed configs whose env: references are the agencies' endpoints and credentials
FEEDS_DIR = ROOT / "connectors" / "feeds"

#: where the code that reads FUNDX_* variables lives (tests/docs/test_docs.py checks each name is documented)
CODE_DIRS = ("fundx", "connectors", "contracts", "flows", "deployments", "matching", "sandbox", "bench", "chaos", ".ci")

#: generated page -> (source, what to edit); copies carry their source's links rewritten for the site
COPIES = {"index.md": "README.md", "security.md": "SECURITY.md"}


# --- markdown helpers -------------------------------------------------------------------------------


def _header(source: str) -> str:
    return (f"<!-- Generated from {source} by tools/docs_refs.py: edit that, then run `{REFRESH}`. "
            "tests/docs/test_docs.py fails while this copy is stale. -->\n")


def _cell(text: str) -> str:
    """Text for one cell of a markdown table: one line, pipes escaped, angle brackets outside code escaped."""
    text = " ".join(str(text).split())
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", r"\|"))
        else:
            out.append(part.replace("<", "&lt;").replace(">", "&gt;").replace("|", r"\|"))
    return "".join(out)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


# --- the CLI ------------------------------------------------------------------------------------------


def cli_reference() -> str:
    """docs/reference/cli.md: every command group and command of the Typer app, with its help and options."""
    import typer

    module, attr, program = CLI_APP
    app = getattr(importlib.import_module(module), attr)
    root = typer.main.get_command(app)
    commands: list[tuple[list[str], Any, Any]] = []

    def walk(cmd: Any, ctx: Any, path: list[str]) -> None:
        commands.append((path, cmd, ctx))
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, typer.Context(sub, info_name=name, parent=ctx), [*path, name])

    walk(root, typer.Context(root, info_name=program), [program])

    lines = [_header(f"the Typer app {module}:{attr}"), f"# The `{program}` command", "",
             f"Every command group and command of `{program}`, with the help and options that "
             f"`{program} COMMAND --help` prints. Settings come from the environment: "
             "[Settings](settings.md).", "",
             "| command | what it does |", "|---|---|"]
    for path, cmd, _ctx in commands[1:]:
        name = " ".join(path)
        lines.append(f"| [`{name}`](#{'-'.join(path)}) | {_cell(cmd.get_short_help_str(limit=10_000))} |")
    lines.append("")
    for path, cmd, ctx in commands:
        level = "##" if len(path) <= 2 else "###"  # fundx and its commands; a group's commands below it
        lines += [f"{level} `{' '.join(path)}`", ""]
        if cmd.help:
            lines += [" ".join(cmd.help.split()), ""]
        usage = " ".join([*path, *cmd.collect_usage_pieces(ctx)])
        lines += ["```", usage, "```", ""]
        rows = []
        for param in cmd.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or param.name == "help":
                continue
            names, help_text = record
            rows.append(f"| {_cell(_code(names))} | {_cell(help_text)} |")
        if rows:
            lines += ["| argument or option | meaning |", "|---|---|", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


# --- the settings -------------------------------------------------------------------------------------


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None or value in ({}, [], ""):
        return "—"
    if isinstance(value, Path):
        return _code(f"./{value}" if not value.is_absolute() else str(value))
    if isinstance(value, datetime):
        zone = getattr(value.tzinfo, "key", None) or str(value.tzinfo)
        when = value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(" ", "minutes")
        return f"{_code(when)} {zone}"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{value:g}"
    if isinstance(value, int):
        text = f"{value:,}"
        if value >= 1 << 20 and value % (1 << 20) == 0:
            text += f" ({value >> 20} MiB)"
        return text
    return _code(str(value))


def _bounds(field: Any) -> str:
    """The accepted range from the Field's constraints (gt, ge, lt, le, min_length), in words."""
    low = high = ""
    for item in field.metadata:
        for attr, sign in (("gt", "> "), ("ge", "≥ "), ("lt", "< "), ("le", "≤ ")):
            value = getattr(item, attr, None)
            if value is not None:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if isinstance(value, float):
                    value = round(value, 3)
                text = f"{sign}{value:,}" if isinstance(value, int) else f"{sign}{value}"
                if attr in ("gt", "ge"):
                    low = text
                else:
                    high = text
        if getattr(item, "min_length", None):
            low = "not empty"
    return ", ".join(part for part in (low, high) if part)


def _settings_section(module: str, cls_name: str, title: str) -> list[str]:
    cls = getattr(importlib.import_module(module), cls_name)
    prefix = cls.model_config.get("env_prefix", "")
    doc = (cls.__doc__ or "").strip().split("\n\n")
    intro = " ".join(doc[0].split()) if doc and doc[0] else ""
    lines = [f"## {title}", "", f"`{module}.{cls_name}`" + (f": {_cell(intro)}" if intro else "."), ""]
    if len(doc) > 1:
        lines += [_cell(doc[1]), ""]
    lines += ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in cls.model_fields.items():
        if not field.description:
            raise SystemExit(f"{module}.{cls_name}.{name} has no Field(description=...): the settings page needs one")
        variable = (prefix + name).upper()
        bounds = _bounds(field)
        meaning = field.description + (f" (accepted: {bounds})" if bounds else "")
        lines.append(f"| `{variable}` | {_default(field)} | {_cell(meaning)} |")
    return [*lines, ""]


def _env_references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _env_references(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _env_references(value, f"{path}[{i}]")
    elif isinstance(node, str) and node.startswith("env:"):
        yield node[4:], path


def feed_variables() -> list[tuple[str, str, str]]:
    """(variable, feed, config key) for every env: reference in the feed configs."""
    found = []
    for path in sorted(FEEDS_DIR.glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for variable, key in _env_references(config):
            found.append((variable, str(config.get("feed", path.stem)), key))
    return found


def settings_reference() -> str:
    """docs/reference/settings.md: every setting's environment variable, default and meaning."""
    lines = [_header("the settings classes, the variables read from the environment and connectors/feeds/*.yaml"),
             "# Settings", "",
             "fundx is configured by environment variables, read once when a process starts and validated: a "
             "bad value stops the command with one line naming the variable. Operations explains where each "
             "process gets them ([Running unattended](../operations.md)).", ""]
    for module, cls_name, title in SETTINGS_CLASSES:
        lines += _settings_section(module, cls_name, title)
    lines += ["## Read from the environment directly", "",
              "Variables the code reads itself (no settings class):", "",
              "| variable | default | meaning |", "|---|---|---|"]
    for var in DIRECT_VARIABLES:
        lines.append(f"| `{var.name}` | {_cell(var.default)} | {_cell(var.meaning)} |")
    lines += ["", "## Agency endpoints and credentials", "",
              "The feed configs (`connectors/feeds/<feed>.yaml`) name their endpoints and credentials as "
              "references, never values: `env:NAME` is the environment variable NAME, else NAME in the "
              "`exchange.env` a running sandbox writes; `secret:BLOCK` a Prefect Secret block. The references "
              "the configs hold today:", "",
              "| variable | feed | config key |", "|---|---|---|"]
    for variable, feed, key in feed_variables():
        lines.append(f"| `{variable}` | {feed} | `{key}` |")
    return "\n".join(lines).rstrip() + "\n"


_VARIABLE = re.compile(r"\b(FUNDX_[A-Z0-9_]*[A-Z0-9])\b")


def variables_in(source: str) -> set[str]:
    """The FUNDX_* names in a module's string literals (prefixes such as "FUNDX_KEYS_" are not names)."""
    import ast

    return {name for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            for name in _VARIABLE.findall(node.value)}


def code_variables() -> dict[str, list[str]]:
    """Every FUNDX_* name the code mentions in a string, with the files that mention it."""
    found: dict[str, list[str]] = {}
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in variables_in(path.read_text(encoding="utf-8")):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


# --- the copies ---------------------------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_ITEM = re.compile(r"^(?:[-*+]|\d+\.) ")


def blank_before_lists(text: str) -> str:
    """A blank line between a paragraph and a list that follows it: GitHub starts the list either way,
    Python-Markdown (mkdocs) only after a blank line, and would print the items as one paragraph."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and _ITEM.match(line) and out:
            before = out[-1]
            if before.strip() and not _ITEM.match(before) and not before.startswith((" ", "\t", "#", "|", ">")):
                out.append("\n")
        out.append(line)
    return "".join(out)



def site_copy(source: str) -> str:
    """README.md or SECURITY.md with its links rewritten for a page in docs/ (docs/x.md -> x.md)."""
    text = (ROOT / source).read_text(encoding="utf-8")
    renames = {target: page for page, target in COPIES.items()}

    def relink(m: re.Match[str]) -> str:
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):
            return m.group(0)  # an address or an anchor of the same page
        path, _, anchor = target.partition("#")
        if path.startswith("docs/"):
            path = path[len("docs/"):]
        elif path in renames:
            path = renames[path]
        else:
            raise SystemExit(f"{source} links to {target}, which is not in docs/: the site cannot show it "
                             "(link a page under docs/, or write the path as code)")
        return f"]({path}{'#' + anchor if anchor else ''})"

    return _header(source) + blank_before_lists(_LINK.sub(relink, text))


# --- entry --------------------------------------------------------------------------------------------


def pages() -> dict[Path, Callable[[], str]]:
    """Every generated page and the function that makes it."""
    made: dict[Path, Callable[[], str]] = {
        DOCS / "reference" / "cli.md": cli_reference,
        DOCS / "reference" / "settings.md": settings_reference,
    }
    for page, source in COPIES.items():
        made[DOCS / page] = functools.partial(site_copy, source)
    return made


def stale() -> list[Path]:
    """The generated pages whose committed copy differs from what the code makes now."""
    return [path for path, make in pages().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != make()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite every generated page")
    mode.add_argument("--check", action="store_true", help="exit 1 naming each stale page")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for path in old:
            print(f"{path.relative_to(ROOT)} is stale: run `{REFRESH}`", file=sys.stderr)
        return 1 if old else 0
    for path, make in pages().items():
        text = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
