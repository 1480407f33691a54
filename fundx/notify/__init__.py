"""Notices of SLA breaches and their recoveries, sent to the channels that FUNDX_NOTIFY configures.

The SLA monitor decides *that* a feed breached a rule (or recovered) and records it in the ledger;
this package only says so to people and systems. A :class:`Notice` carries figures and rule names —
feed, rule, severity, night, expected, observed — never record data, and every text that leaves the
exchange passes :func:`guard`, which refuses anything shaped like a resident identity number.

Configuration
-------------
``FUNDX_NOTIFY`` lists the channels, separated by new lines or commas (a comma starts a new entry
only where a scheme ``xxx://`` or a reference ``env:``/``secret:`` follows, so ``to=a@x,b@y`` stays
whole; blank lines and lines starting with ``#`` are skipped). Entries are counted from 1 in error
messages. ``FUNDX_NOTIFY_TIMEOUT`` (default 10) is the connect and the read timeout in seconds of
every channel; ``timeout=SECONDS`` in an entry overrides it for that entry. Transient failures are
retried by :class:`fundx.core.retry.Retrier` with the exchange's FUNDX_RETRY_* settings.

``webhook+https://host[:port]/path[?secret=env:NAME][&timeout=S]`` (also ``webhook+http://``, or
plain ``https://`` / ``http://``)
    POSTs the notice as JSON (below). With ``secret=env:NAME`` or ``secret=secret:BLOCK`` (see
    :func:`fundx.core.settings.resolve`; a secret written in the entry is refused) the request carries
    ``X-Fundx-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes under that secret.
    Other query parameters are sent on to the receiver. 2xx is success; 408, 429 (Retry-After is
    honoured) and 5xx are retried; anything else, a redirect included, is a permanent failure.

``smtp://[user@]host[:port]?to=a@x,b@y[&from=fundx@x][&starttls=1][&password=env:NAME][&cafile=PATH][&timeout=S]``
(``smtps://`` for TLS from the first byte; ports default to 25 and 465)
    A plain-text e-mail whose subject reads ``[fundx] BREACH police.deaths row_count on 2026-11-22``
    or ``[fundx] RECOVERED ...``. ``password`` must be a reference and needs ``user@``; it is sent
    only over TLS (``smtps://`` or ``starttls=1``) unless the host is a loopback address. ``cafile``
    names a PEM bundle of the CAs to trust instead of the system's. ``from`` defaults to
    ``fundx@<this host's name>``.

``apprise+<apprise URL>``, e.g. ``apprise+json://127.0.0.1:8080/path`` or ``apprise+mailtos://...``
    Sent through the Apprise library (title = the subject, body = the e-mail's text). Unless the URL
    says otherwise, ``cto``/``rto`` (Apprise's connect and read timeouts) are set to the timeout.

``env:NAME`` / ``secret:BLOCK``
    The whole entry is read from the reference, for URLs that are secrets themselves (a chat bot's
    token in an Apprise URL, a webhook URL with a key in its path). Inside such an entry secrets may
    be written literally; the entry is shown as the reference, never as its value.

An unknown scheme or a malformed entry raises :class:`~fundx.core.errors.ConfigurationError` naming
FUNDX_NOTIFY and the entry's number, never its secrets. A delivery that fails raises nothing:
:meth:`Notifier.send` returns one :class:`Delivery` per channel (its redacted address, ok or the
error's type and a content-free message) for the caller to record.

Webhook body, schema ``fundx.notice/1`` (UTF-8 JSON, keys sorted)::

    {
      "schema":    "fundx.notice/1",
      "kind":      "breach" | "recovered",
      "breach_id": "2026-11-22:police.deaths:row_count",   # the same for a breach and its recovery
      "feed":      "police.deaths",
      "rule":      "row_count",
      "severity":  "warning" | "critical",
      "night":     "2026-11-22",                            # the exchange night, Asia/Shanghai
      "expected":  ">= 1000 rows",
      "observed":  "0 rows",
      "detail":    "..." | null,
      "at":        "2026-11-23T02:14:00+08:00",             # when it was detected, ISO 8601
      "subject":   "[fundx] BREACH police.deaths row_count on 2026-11-22"
    }

Receivers should ignore keys they do not know; a change that breaks readers gets ``fundx.notice/2``.

The package, in the order a notice travels: :mod:`fundx.notify.notice` (the notice and the guard),
:mod:`fundx.notify.config` (FUNDX_NOTIFY read into channels), the channels
(:mod:`~fundx.notify.webhook`, :mod:`~fundx.notify.smtp`, :mod:`~fundx.notify.apprise`, on the base
in :mod:`~fundx.notify.channel`), and :mod:`fundx.notify.notifier` (sending, with retries).
"""

from __future__ import annotations

# the package's API, for the SLA monitor and the CLI
from fundx.notify.notice import Kind, Notice, Severity
from fundx.notify.notifier import Delivery, Notifier, send_test

__all__ = ["Delivery", "Kind", "Notice", "Notifier", "Severity", "send_test"]
