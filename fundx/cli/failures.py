"""``fundx failures``: the stewards' quarantine — list and open quarantined batches, release or reject rows."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fundx.cli.common import console, fail, signed_in

failures_app = typer.Typer(
    help="The stewards' quarantine: rows that failed their contract (sealed for the stewards), and decisions.",
    no_args_is_help=True)


@failures_app.command("list")
def failures_list(
    feed: Annotated[str | None, typer.Option(help="only this feed")] = None,
    night: Annotated[str | None, typer.Option(help="only this night (YYYY-MM-DD)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Quarantined and held batches (newest first), with rows failing each rule and what is decided."""
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    ledger = Ledger.from_settings()
    found = quarantine.batches(ledger, feed=feed, night=night)
    rules: dict[str, list[dict]] = {}
    for r in quarantine.rule_counts(ledger, feed=feed, night=night):
        rules.setdefault(r["batch_id"], []).append({"rule": r["rule"], "failed": r["failed"], "rows": r["rows"]})
    if as_json:
        print(json.dumps([{
            "batch": q.batch_id, "feed": q.feed, "night": q.night, "pulled": q.pulled, "valid": q.valid,
            "quarantined": q.quarantined, "held": q.held, "reason": q.reason, "released": q.released,
            "released_pending": q.released_pending, "rejected": q.rejected, "open": q.open,
            "rules": sorted(rules.get(q.batch_id, []), key=lambda r: r["rule"]),
        } for q in found], ensure_ascii=False, indent=2))
        return
    if not found:
        console.print("nothing quarantined" + (f" for {feed}" if feed else "") + (f" on {night}" if night else ""))
        return
    table = Table(title="quarantined batches")
    for col in ("night", "feed", "batch", "pulled", "quarantined", "held", "released", "rejected", "open"):
        table.add_column(col, justify="right" if col in ("pulled", "quarantined", "released", "rejected", "open") else "left")
    for q in found:
        table.add_row(q.night, q.feed, q.batch_id, f"{q.pulled:,}", f"{q.quarantined:,}", "[yellow]held[/yellow]" if q.held else "",
                      f"{q.released:,}", f"{q.rejected:,}", f"{q.open:,}")
    console.print(table)
    per_rule = Table(title="rows failing each rule")
    for col in ("batch", "rule", "failed", "of rows"):
        per_rule.add_column(col, justify="right" if col in ("failed", "of rows") else "left")
    for q in found:
        for r in sorted(rules.get(q.batch_id, []), key=lambda r: (-r["failed"], r["rule"])):
            per_rule.add_row(q.batch_id, r["rule"], f"{r['failed']:,}", f"{100 * r['failed'] / max(r['rows'], 1):.2f} %")
    console.print(per_rule)
    console.print("look at a batch's rows: [bold]fundx failures show BATCH[/bold]")


@failures_app.command("show")
def failures_show(
    batch: Annotated[str, typer.Argument(help="the quarantined batch (fundx failures list)")],
    account: Annotated[str, typer.Option("--account", "-a", help="the steward's or auditor's console account "
                                                                 "(its password is asked)")],
    rule: Annotated[str | None, typer.Option(help="only rows that broke this rule")] = None,
    limit: Annotated[int, typer.Option(help="rows to show at most")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """A quarantined batch's rows: the rules each broke, identity numbers masked, and only the values those
    rules looked at. Opening the quarantine is audited, under the account."""
    from fundx.core.errors import FundxError
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    who = signed_in(account, ("steward", "auditor")).name
    ledger = Ledger.from_settings()
    try:
        record = quarantine.batch(ledger, batch)
        frame = quarantine.read_rows(ledger, batch)
    except FundxError as exc:
        fail(exc)
    if rule:
        frame = frame[frame[quarantine.RULES].fillna("").str.split(";").map(lambda ids: rule in ids)]
    shown = quarantine.masked_view(frame.head(limit), record.feed)
    state = quarantine.row_status(ledger, batch)
    ledger.log_event("failures.show", batch, {"rows_shown": len(shown), "rule": rule}, actor=who)
    if as_json:
        print(json.dumps([{"state": state.get(int(r[quarantine.ROW]), "open"), **r}
                          for r in shown.to_dict(orient="records")], ensure_ascii=False, indent=2))
        return
    verdict = f"held back whole: {record.reason}" if record.held else f"{record.quarantined:,} of {record.pulled:,} rows"
    table = Table(title=f"{batch}\n({record.feed}, night {record.night}; {verdict})", show_lines=True)
    table.add_column("row", justify="right")
    table.add_column("state")
    table.add_column("rules broken", overflow="fold")
    table.add_column("values (identity masked; other personal data only where a broken rule looks)", overflow="fold")
    values = [c for c in shown.columns if c not in (quarantine.ROW, quarantine.RULES)]
    for r in shown.to_dict(orient="records"):
        lines = [f"{c}: {r[c]}" for c in values if r[c] != quarantine.HIDDEN]
        table.add_row(str(r[quarantine.ROW]), state.get(int(r[quarantine.ROW]), "open"),
                      r[quarantine.RULES].replace(";", "\n") or "(none: held with its batch)", "\n".join(lines))
    console.print(table)
    more = len(frame) - len(shown)
    if more > 0:
        console.print(f"{more:,} more rows: --limit, or --rule to narrow")
    console.print(f"decide: [bold]fundx failures release {batch} --rows 1,3-5 --reason TEXT --account NAME[/bold] (or --rule RULE, "
                  f"or every open row), or [bold]fundx failures reject ...[/bold]")


def _decide(action: str, batch: str, rows: str | None, rule: str | None, reason: str, account: str) -> None:
    from connectors import load_feed
    from fundx.core.errors import FundxError
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    who = signed_in(account, ("steward",)).name
    ledger = Ledger.from_settings()
    try:
        decision = quarantine.decide(ledger, batch, action, reason=reason, actor=who,
                                     rows=quarantine.parse_rows(rows), rule=rule)
    except FundxError as exc:
        fail(exc)
    what = quarantine.row_ranges(decision.rows)
    if action == "release":
        stage = load_feed(decision.feed).stage
        console.print(f"decision {decision.id}: {len(decision.rows)} rows ({what}) of {batch} released by "
                      f"{decision.actor}; they go to {stage} with the next run of {decision.feed}")
    else:
        console.print(f"decision {decision.id}: {len(decision.rows)} rows ({what}) of {batch} rejected by "
                      f"{decision.actor}; they stay sealed in the quarantine and are never delivered")


_ROWS_HELP = "row numbers as `fundx failures show` prints them, e.g. 1,3,7-9 (default: every open row)"


@failures_app.command("release")
def failures_release(
    batch: Annotated[str, typer.Argument(help="the quarantined batch")],
    reason: Annotated[str, typer.Option(help="why (required; audited; no identity numbers)")],
    account: Annotated[str, typer.Option("--account", "-a", help="the steward's console account (its password is "
                                                                 "asked)")],
    rows: Annotated[str | None, typer.Option(help=_ROWS_HELP)] = None,
    rule: Annotated[str | None, typer.Option(help="every open row that broke this rule")] = None,
) -> None:
    """Release rows to their stage: they go out with the feed's next run, exactly once. Audited. A steward's
    console account decides (--account; its password is checked)."""
    _decide("release", batch, rows, rule, reason, account)


@failures_app.command("reject")
def failures_reject(
    batch: Annotated[str, typer.Argument(help="the quarantined batch")],
    reason: Annotated[str, typer.Option(help="why (required; audited; no identity numbers)")],
    account: Annotated[str, typer.Option("--account", "-a", help="the steward's console account (its password is "
                                                                 "asked)")],
    rows: Annotated[str | None, typer.Option(help=_ROWS_HELP)] = None,
    rule: Annotated[str | None, typer.Option(help="every open row that broke this rule")] = None,
) -> None:
    """Reject rows for good: they stay sealed in the quarantine and are never delivered. Audited. A steward's
    console account decides (--account; its password is checked)."""
    _decide("reject", batch, rows, rule, reason, account)
