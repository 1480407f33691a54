"""The notice of an SLA breach or its recovery, as told to people, and the guard every text passes.

A :class:`Notice` carries figures and rule names — feed, rule, severity, night, expected, observed —
never record data; every text made from it (the webhook body, the subject, an e-mail's text) passes
:func:`guard`, which refuses anything shaped like a resident identity number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from fundx.core.identity import first_id_like, mask_id_like
from fundx.core.timeutil import SHANGHAI, now

#: the version of the webhook body; a change that breaks readers gets a new number
SCHEMA = "fundx.notice/1"

Kind = Literal["breach", "recovered"]
Severity = Literal["warning", "critical"]
KINDS: tuple[str, ...] = ("breach", "recovered")
SEVERITIES: tuple[str, ...] = ("warning", "critical")


def guard(text: str, *, what: str = "text") -> str:
    """``text`` unchanged, or ValueError if it holds something shaped like an identity number.

    Full-width digits, spaces between the digits and first-generation 15-digit numbers count
    (:func:`fundx.core.identity.first_id_like`). The error names ``what`` and shows the match masked, never whole.
    """
    match = first_id_like(text, isolated=True)
    if match is not None:
        raise ValueError(
            f"refusing to send {what}: it holds an identity-number-shaped string ({mask_id_like(match)}); "
            "notices carry figures and rule names only"
        )
    return text


_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TEXT_FIELDS = ("feed", "rule", "night", "expected", "observed", "detail", "breach_id")


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One breach of an SLA rule, or its recovery, as told to people: figures and names only.

    ``expected`` and ``observed`` may be given as numbers; they are kept as text. ``breach_id``
    defaults to ``night:feed:rule`` and is the same for a breach and its recovery.
    """

    kind: Kind
    feed: str
    rule: str
    severity: Severity
    night: str
    expected: str
    observed: str
    detail: str | None = None
    breach_id: str = ""
    at: datetime = field(default_factory=now)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a notice's kind is one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"a notice's severity is one of {', '.join(SEVERITIES)}")
        for name in ("expected", "observed"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, name, f"{value:g}" if isinstance(value, float) else str(value))
        if not self.breach_id:
            object.__setattr__(self, "breach_id", f"{self.night}:{self.feed}:{self.rule}")
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is None and name == "detail":
                continue
            if not isinstance(value, str):
                raise TypeError(f"a notice's {name} is text, not {type(value).__name__}")
            if name in ("feed", "rule", "breach_id") and not value.strip():
                raise ValueError(f"a notice's {name} must not be empty")
            guard(value, what=f"the notice's {name}")
        if not _NIGHT.match(self.night):
            raise ValueError("a notice's night is a date written YYYY-MM-DD")
        date.fromisoformat(self.night)  # a real date
        if not isinstance(self.at, datetime) or self.at.tzinfo is None:
            raise ValueError("a notice's time (at) must be a timezone-aware datetime")

    @property
    def subject(self) -> str:
        """``[fundx] BREACH police.deaths row_count on 2026-11-22`` (or RECOVERED)."""
        return guard(f"[fundx] {self.kind.upper()} {self.feed} {self.rule} on {self.night}", what="the subject")

    def as_json(self) -> dict[str, Any]:
        """The webhook body (schema ``fundx.notice/1``, documented in this module)."""
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "breach_id": self.breach_id,
            "feed": self.feed,
            "rule": self.rule,
            "severity": self.severity,
            "night": self.night,
            "expected": self.expected,
            "observed": self.observed,
            "detail": self.detail,
            "at": self.at.astimezone(SHANGHAI).isoformat(),
            "subject": self.subject,
        }

    def text(self) -> str:
        """The plain-text message of e-mails and Apprise notifications."""
        if self.rule == "cert_expiry":  # the monitor's certificate warning: feed names the certificate
            head = (f"The exchange's {self.feed} runs out soon ({self.severity}): {self.observed}."
                    if self.kind == "breach" else f"The exchange's {self.feed} was renewed: {self.observed}.")
        elif self.kind == "breach":
            head = f"The feed {self.feed} breached its SLA rule {self.rule} ({self.severity}) on the night of {self.night}."
        else:
            head = f"The feed {self.feed} meets its SLA rule {self.rule} again (it was {self.severity}) for the night of {self.night}."
        rows = [
            ("feed", self.feed),
            ("rule", self.rule),
            ("severity", self.severity),
            ("night", self.night),
            ("expected", self.expected),
            ("observed", self.observed),
        ]
        if self.detail:
            rows.append(("detail", self.detail))
        rows += [
            ("breach id", self.breach_id),
            ("detected at", self.at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S (Asia/Shanghai)")),
        ]
        lines = [head, ""] + [f"{name + ':':<13}{value}" for name, value in rows]
        lines += ["", "Sent by the fundx exchange. Notices carry figures and rule names only, never record data."]
        return guard("\n".join(lines) + "\n", what="the message")
