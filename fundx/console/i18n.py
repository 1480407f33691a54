"""The console's languages: Chinese (zh_CN) first, English selectable — Babel's gettext catalogues with Jinja2's
i18n extension.

English is the source language: the templates and the Python code carry English messages (``_("...")`` in a
template, :func:`L` or :data:`N_` in Python), and fundx/console/locale/zh_CN/LC_MESSAGES/messages.po translates
them. The compiled ``messages.mo`` beside it is committed and shipped as package data (a fresh clone needs no
build step); ``make messages`` extracts, updates and compiles the catalogue again (babel.cfg), and
tests/console/test_console_i18n.py fails when a template's message has no Chinese or the .mo is older than the .po.

The language is the browser's choice, kept in the :data:`COOKIE` cookie set by the switch in every page's header
(GET /language/<lang>); without it, or with anything else in it, pages are in :data:`DEFAULT` (zh_CN).
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LOCALE = HERE / "locale"
DOMAIN = "messages"
#: the languages a page can be in, with the name the switch shows (in its own language)
LANGUAGES: dict[str, str] = {"zh_CN": "中文", "en": "English"}
DEFAULT = "zh_CN"
#: the HTML ``lang`` of each
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
COOKIE = "fundx_lang"


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for extraction, translate later"
    """A message marked for the catalogue, translated where it is shown."""
    return message


@dataclass(frozen=True)
class Lazy:
    """A message translated when a page is rendered in the request's language: its English text (the msgid) and
    the values for its ``%(name)s`` placeholders."""

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.msgid % self.params if self.params else self.msgid


def L(msgid: str, **params: Any) -> Lazy:  # noqa: N802 - a marker like N_ (babel.cfg extracts it)
    """A message to translate later, with its values: ``L("Batch %(batch)s", batch=batch_id)``."""
    return Lazy(msgid, params)


#: the accounts' roles as a page names them
ROLES: dict[str, str] = {"steward": N_("steward"), "auditor": N_("auditor"), "inspector": N_("inspector"),
                         "supervisor": N_("supervisor")}


#: a quarantined row's state (fundx.exchange.quarantine.row_status: its first word)
ROW_STATES: dict[str, str] = {"open": N_("open"), "released": N_("released"), "delivered": N_("delivered"),
                              "rejected": N_("rejected")}


#: a feed's service levels on a night (fundx.console.nights.FeedNight.sla)
SLA_STATES: dict[str, str] = {"breached": N_("breached"), "recovered": N_("recovered"), "no breach": N_("no breach")}


def role_label(role: str) -> Lazy:
    """A role's name, translated where it is shown."""
    return L(ROLES.get(role, role))


def language_of(raw: str | None) -> str:
    """The language a cookie names, when it is one of :data:`LANGUAGES`; else :data:`DEFAULT`."""
    return raw if raw in LANGUAGES else DEFAULT


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``lang`` (English: the messages themselves)."""
    if lang == "en":
        return gettext.NullTranslations()
    path = LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with open(path, "rb") as fp:
        return gettext.GNUTranslations(fp)


class Words:
    """Translates messages into one language, for the Python side of a page: ``_ = Words(lang)``,
    ``_("Batch %(batch)s", batch=b)``, or ``_(lazy)`` for a :class:`Lazy`."""

    def __init__(self, lang: str) -> None:
        self.lang = language_of(lang)
        self._t = translations(self.lang)

    def __call__(self, message: str | Lazy, **params: Any) -> str:
        if isinstance(message, Lazy):
            msgid, params = message.msgid, {**message.params, **params}
        else:
            msgid = message
        params = {k: self(v) if isinstance(v, Lazy) else v for k, v in params.items()}
        text = self._t.gettext(msgid)
        return text % params if params else text
