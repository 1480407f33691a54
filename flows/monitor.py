"""The SLA monitor as a Prefect flow: judge a night's feeds against their service levels.

Runs after every night (``nightly_exchange`` calls :func:`fundx.sla.monitor.check` itself) and on its own
schedule (deployment ``sla-monitor/hourly``), so that a feed that never arrived is caught even when
no night ran. Parameters are a night's date only; what it records and sends is figures and rule names.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from fundx.core.errors import content_free
from fundx.core.settings import private_umask
from fundx.sla import monitor


@flow(name="sla-monitor", persist_result=False, validate_parameters=True)
def sla_monitor(night: str | None = None) -> dict:
    """Judge ``night`` (default: tonight, Asia/Shanghai); record breaches and recoveries and notify them once."""
    private_umask()  # a worker's flow run: whatever umask the worker was started with
    logger = get_run_logger()
    try:
        done = monitor.check(night=night, logger=logger)
    except Exception as exc:  # noqa: BLE001 - content-free: Prefect stores a failed flow's exception
        raise content_free(exc) from None
    table_artifact(done)
    return {"night": done.night.isoformat(), "breached": len(done.breached), "opened": len(done.opened),
            "recovered": len(done.recovered), "notices_sent": done.notices_sent, "notices_failed": done.notices_failed}


def table_artifact(done: monitor.Checked) -> None:
    """The night's findings, then the certificates', as a table artifact (``sla-<night>``): rule, expected,
    observed, met or breached."""
    rows = [{"feed": f.feed or "(night)", "rule": f.rule, "severity": f.severity, "expected": f.expected,
             "observed": f.observed, "state": "BREACHED" if f.breached else "met"}
            for f in [*done.findings, *done.certificates]]  # the certificates' rows last (rule cert_expiry)
    create_table_artifact(table=rows, key=f"sla-{done.night.isoformat()}",
                          description=f"Service levels of the night of {done.night}: {len(done.breached)} breached")
