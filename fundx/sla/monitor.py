"""The SLA monitor: the ledger's facts of a night, judged against each feed's service levels.

:func:`check` reads what the ledger knows of a night (every feed's pulls, quarantine and event
latency; the night's run), judges it with :func:`contracts.sla.findings.evaluate` at the given clock, records
breaches that opened and recoveries in the ledger's ``breaches`` table (audited), emits Prefect
events (``fundx.sla.breach`` / ``fundx.sla.recovered``, resource ``fundx.feed.<feed>``) and sends
each breach's notice, and later its recovery's, through the notifier (FUNDX_NOTIFY) — once each:
a notice is marked sent when a channel accepted it, and one no channel accepted is sent again by
the next check. Only figures, times and rule names leave this module.

It runs after every night (the nightly flow calls it), on its own schedule (the ``sla-monitor``
flow), and from ``fundx sla check``.

Certificates (:func:`certificate_findings`): every check also judges each certificate the exchange
holds (:func:`fundx.crypto.lifecycle.held_certificates`: the CA, the CRL's next update, the exchange's
signing certificate, every stage's, the stewards' and the office's encryption and acknowledgement-signing
certificates) against FUNDX_KEYS_EXPIRY_WARNING_DAYS (default 30): rule ``cert_expiry``, "feed" the
certificate's role and common name (``certificate encryption CN=death_matching``), breached when fewer
days are left (critical from 7 days, once expired, or when every current certificate of the role is
revoked). It is a breach like the others: opened, noticed
and audited once, recovered (with a notice) when the certificate is renewed — a role is judged by its
longest-lasting current certificate. Only roles, names, dates and days leave: never key material.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts.sla.findings import FeedNight, Finding, NightRun, Outcome, evaluate, transitions
from contracts.sla.policy import FeedSla, Severity, all_slas
from fundx.core.timeutil import SHANGHAI, UTC
from fundx.core.timeutil import now as clock_now
from fundx.ledger import Ledger
from fundx.ledger.schema import breaches, pull_figures, pulls, quarantines, rule_failures, runs

log = logging.getLogger("fundx.monitor")

#: how long a night may run (FUNDX_NIGHT_BUDGET_MINUTES); past it the night itself is in breach
DEFAULT_NIGHT_BUDGET = timedelta(minutes=120)


def night_budget() -> timedelta:
    """FUNDX_NIGHT_BUDGET_MINUTES, default 120."""
    import os

    from fundx.core.errors import ConfigurationError

    raw = os.environ.get("FUNDX_NIGHT_BUDGET_MINUTES")
    if not raw:
        return DEFAULT_NIGHT_BUDGET
    try:
        minutes = float(raw)
    except ValueError:
        raise ConfigurationError("FUNDX_NIGHT_BUDGET_MINUTES is not a number of minutes") from None
    if minutes <= 0:
        raise ConfigurationError("FUNDX_NIGHT_BUDGET_MINUTES must be positive")
    return timedelta(minutes=minutes)


# --- the facts -----------------------------------------------------------------------------------


def feed_night(ledger: Ledger, feed: str, night: date, slas: dict[str, FeedSla]) -> FeedNight:
    """What the ledger knows of ``feed`` on ``night`` (pulls of the night's runs, backfills aside)."""
    text = night.isoformat()
    query = (sa.select(pulls, pull_figures.c.event_lag_p50, pull_figures.c.event_lag_p90)
             .join(runs, runs.c.id == pulls.c.run_id)
             .outerjoin(pull_figures, pull_figures.c.pull_id == pulls.c.id)
             .where(pulls.c.feed == feed, runs.c.night == text, pulls.c.backfill.is_(False))
             .order_by(pulls.c.id))
    with ledger.engine.connect() as conn:
        found = list(conn.execute(query).mappings())
        ok = [p for p in found if p["outcome"] in ("pulled", "held")]
        if not slas[feed].due(night) or slas[feed].period == "day":
            chosen = next(iter(ok), None)
        else:  # a weekly or monthly feed's delivery is its first pull with rows
            chosen = next((p for p in ok if p["rows"]), next(iter(ok), None))
        kept = None
        if chosen is not None:
            kept = conn.execute(sa.select(quarantines).where(quarantines.c.pull_id == chosen["id"])).mappings().first()
    band = slas[feed].row_count
    history = ledger.row_history(feed, limit=band.nights, before=chosen["id"] if chosen else None) if band else []
    if chosen is None:
        outcome: Outcome = "failed" if any(p["outcome"] == "failed" for p in found) else "missing"
        return FeedNight(feed, night, None, outcome, history=history)
    lag = None
    if chosen["event_lag_p90"] is not None:
        lag = {"p50": float(chosen["event_lag_p50"]), "p90": float(chosen["event_lag_p90"])}
    failing = 0
    if kept is not None:
        failing = int(kept["quarantined"]) if not kept["held"] else failing_rows(ledger, kept["batch_id"], kept["pulled"])
    return FeedNight(feed, night, chosen["ended_at"], chosen["outcome"], rows=int(chosen["rows"] or 0),
                         quarantined=failing, history=history, event_lag_days=lag)


def failing_rows(ledger: Ledger, batch_id: str, pulled: int) -> int:
    """Of a held batch: its rows that failed a row rule, at least the most failing any one rule."""
    query = sa.select(rule_failures.c.failed).where(rule_failures.c.batch_id == batch_id,
                                                    rule_failures.c.rule != "row_count")
    with ledger.engine.connect() as conn:
        counts = list(conn.execute(query).scalars())
    return min(pulled, max(counts, default=0))


def night_run(ledger: Ledger, night: date) -> NightRun | None:
    """The night's (latest) run of the whole exchange, if there was one."""
    query = (sa.select(runs).where(runs.c.kind == "night", runs.c.night == night.isoformat())
             .order_by(runs.c.id.desc()).limit(1))
    with ledger.engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return NightRun(night, row["started_at"], row["ended_at"], row["outcome"])


# --- checking ------------------------------------------------------------------------------------


@dataclass
class Checked:
    """What one check found and did (figures only)."""

    night: date
    findings: list[Finding]
    opened: list[Finding] = field(default_factory=list)
    recovered: list[Finding] = field(default_factory=list)
    notices_sent: int = 0
    notices_failed: int = 0
    certificates: list[Finding] = field(default_factory=list)

    @property
    def breached(self) -> list[Finding]:
        return [f for f in self.findings if f.breached]


def judge(ledger: Ledger, night: date, *, now: datetime | None = None,
          budget: timedelta | None = None) -> list[Finding]:
    """The findings of ``night`` at ``now``, without recording or sending anything."""
    slas = all_slas()
    facts = [feed_night(ledger, feed, night, slas) for feed in sorted(slas)]
    return evaluate(slas, facts, night_run(ledger, night), now=now or clock_now(),
                        night_budget=budget or night_budget())


#: a certificate this close to its end (or past it) is a critical breach, not a warning
CRITICAL_DAYS = 7
CERT_RULE = "cert_expiry"
_RENEW = "renew it before then: fundx keys rotate (docs/security.md, Certificates over their lives)"


def certificate_findings(day: date, *, now: datetime, store: Any = None, warn_days: int | None = None) -> list[Finding]:
    """One ``cert_expiry`` finding per certificate role the exchange holds (see the module doc), for ``day``."""
    from fundx.crypto.keys import KeySettings, KeyStore
    from fundx.crypto.lifecycle import held_certificates

    if store is None:
        from fundx.core.settings import get_settings

        store = KeyStore(KeySettings(), home=get_settings().home)
        if not store.settings.production and not store.paths.ca_cert.exists():
            return []  # no keys yet: the first night makes them
    warn = store.settings.expiry_warning_days if warn_days is None else warn_days
    found = []
    for held in held_certificates(store):
        left = held.days_left(now)
        ends = f"{held.not_after:%Y-%m-%d}"
        if held.revoked:
            observed, left = "revoked: no valid certificate left", -1
        elif left < 0:
            observed = f"expired on {ends}"
        elif held.role == "crl":
            observed = f"next update due {ends} (in {left} days)"
        else:
            observed = f"valid until {ends} ({left} days left)"
        severity: Severity = "critical" if left <= CRITICAL_DAYS else "warning"
        found.append(Finding(day, held.label[:128], CERT_RULE, severity, f"more than {warn} days left", observed,
                             left < warn))
    return found


def check(ledger: Ledger | None = None, *, night: date | str | None = None, now: datetime | None = None,
          notifier: Any = None, budget: timedelta | None = None, emit: bool = True,
          logger: logging.Logger | logging.LoggerAdapter | None = None, certificates: bool = True,
          keys: Any = None) -> Checked:
    """Judge ``night`` (default: tonight, Asia/Shanghai) at ``now``, and the certificates (``keys``: a
    KeyStore, default FUNDX_KEYS_*) unless ``certificates`` is False; record, emit and notify; see the module doc."""
    from fundx.notify import Notifier

    logger = logger or log
    ledger = ledger or Ledger.from_settings()
    now = now or clock_now()
    day = date.fromisoformat(night) if isinstance(night, str) else night or now.astimezone(SHANGHAI).date()
    findings = judge(ledger, day, now=now, budget=budget)
    result = Checked(day, findings)
    if certificates:
        result.certificates = certificate_findings(max(day, now.astimezone(SHANGHAI).date()), now=now, store=keys)
    with ledger.audited() as conn:
        open_rows = list(conn.execute(breaches.select().where(breaches.c.status == "open")).mappings())
        open_keys = {(date.fromisoformat(r["night"]), r["feed"] or None, r["rule"]) for r in open_rows}
        opened, recovered = transitions(open_keys, [*findings, *result.certificates])
        stamp = datetime.now(UTC)
        for f in opened:
            conn.execute(breaches.insert().values(
                night=f.night.isoformat(), feed=f.feed or "", rule=f.rule, severity=f.severity,
                expected=f.expected, observed=f.observed, status="open", opened_at=stamp))
            ledger.audit(conn, "sla.breach", f"{f.feed or 'night'}:{f.rule}", {
                "night": f.night.isoformat(), "severity": f.severity, "expected": f.expected, "observed": f.observed})
        for f in recovered:
            conn.execute(breaches.update().where(
                breaches.c.night == f.night.isoformat(), breaches.c.feed == (f.feed or ""), breaches.c.rule == f.rule,
                breaches.c.status == "open").values(
                status="recovered", recovered_on=(f.met_on or f.night).isoformat(), recovered_observed=f.observed,
                recovered_at=stamp))
            ledger.audit(conn, "sla.recovered", f"{f.feed or 'night'}:{f.rule}", {
                "night": f.night.isoformat(), "met_on": (f.met_on or f.night).isoformat(), "observed": f.observed})
    result.opened, result.recovered = opened, recovered
    for f in opened:
        logger.warning("SLA breach: %s %s on %s (%s): expected %s, observed %s", f.feed or "the night", f.rule,
                       f.night, f.severity, f.expected, f.observed)
    for f in recovered:
        logger.info("SLA recovered: %s %s of %s (met on %s)", f.feed or "the night", f.rule, f.night, f.met_on)
    if emit:
        _emit(opened, recovered, logger)
    notifier = notifier if notifier is not None else Notifier.from_settings()
    result.notices_sent, result.notices_failed = _notify(ledger, notifier, logger)
    return result


def _emit(opened: list[Finding], recovered: list[Finding], logger) -> None:
    """Prefect events for automations and the UI (no-op without a Prefect API)."""
    try:
        from prefect.events import emit_event
    except ImportError:  # pragma: no cover - prefect is a dependency
        return
    for kind, items in (("breach", opened), ("recovered", recovered)):
        for f in items:
            try:
                emit_event(
                    event=f"fundx.sla.{kind}",
                    resource={"prefect.resource.id": f"fundx.feed.{f.feed or 'night'}",
                              "prefect.resource.name": f.feed or "night"},
                    payload={"night": f.night.isoformat(), "rule": f.rule, "severity": f.severity,
                             "expected": f.expected, "observed": f.observed},
                )
            except Exception as exc:  # noqa: BLE001 - events are a convenience; the ledger holds the breach
                logger.warning("could not emit the fundx.sla.%s event (%s)", kind, type(exc).__name__)


def _notify(ledger: Ledger, notifier: Any, logger) -> tuple[int, int]:
    """Send every breach and recovery notice not yet accepted by a channel; returns (sent, failed)."""
    from fundx.notify import Kind, Notice

    if not getattr(notifier, "channels", None):
        return 0, 0
    with ledger.engine.connect() as conn:
        unsent = list(conn.execute(breaches.select().where(
            sa.or_(breaches.c.notified_at.is_(None),
                   sa.and_(breaches.c.status == "recovered", breaches.c.recovery_notified_at.is_(None))))
            .order_by(breaches.c.id)).mappings())
    sent = failed = 0
    for row in unsent:
        kinds: list[Kind] = []
        if row["notified_at"] is None:
            kinds.append("breach")
        if row["status"] == "recovered" and row["recovery_notified_at"] is None:
            kinds.append("recovered")
        for kind in kinds:
            recovered = kind == "recovered"
            notice = Notice(
                kind=kind, feed=row["feed"] or "night", rule=row["rule"], severity=row["severity"],
                night=row["night"], expected=row["expected"],
                observed=row["recovered_observed"] if recovered else row["observed"],
                detail=f"met again on {row['recovered_on']}" if recovered else
                (_RENEW if row["rule"] == CERT_RULE else None),
            )
            results = notifier.send(notice)
            if any(r.ok for r in results):
                column = "recovery_notified_at" if recovered else "notified_at"
                with ledger.transaction() as conn:
                    conn.execute(breaches.update().where(breaches.c.id == row["id"]).values(
                        **{column: datetime.now(UTC)}))
                sent += 1
            else:
                failed += 1
                logger.error("the %s notice of %s %s (%s) reached no channel; the next check sends it again",
                             kind, row["feed"] or "the night", row["rule"], row["night"])
    return sent, failed


def open_breaches(ledger: Ledger) -> list[dict[str, Any]]:
    """Breaches not yet recovered, oldest first."""
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            breaches.select().where(breaches.c.status == "open").order_by(breaches.c.id)).mappings()]


def breach_records(ledger: Ledger, *, night: str | None = None) -> list[dict[str, Any]]:
    """Every breach (open and recovered), newest first; of one night if given."""
    query = breaches.select().order_by(breaches.c.id.desc())
    if night:
        query = query.where(breaches.c.night == night)
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# --- the event latency of a batch ----------------------------------------------------------------


