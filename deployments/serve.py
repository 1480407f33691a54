"""Serve the exchange's deployments from this one process (the alternative to ``make serve``'s work
pool and worker): the nightly exchange at 01:30 Asia/Shanghai, and each feed on its own (no
schedule; start with ``prefect deployment run 'exchange-feed/<feed>'``). The list is
:func:`deployments.catalog.specs`, the same one ``python -m deployments.register`` registers.

Needs a running Prefect server (schedules do not fire in ephemeral mode):
    prefect server start &           # then, in another shell:
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve
A second night never starts while one runs: the nightly deployment has a concurrency limit of 1.
Use this or ``make serve`` against one server, not both: they register deployments of the same names.
"""

from __future__ import annotations

from prefect import serve
from prefect.types.entrypoint import EntrypointType

from deployments.catalog import NIGHTLY_CRON, TIMEZONE, specs

__all__ = ["NIGHTLY_CRON", "TIMEZONE", "deployments"]


def deployments() -> list:
    """The nightly deployment, one per feed, and whatever else the catalog lists; one run of each at a time."""
    return [spec.load_flow().to_deployment(**spec.options(), entrypoint_type=EntrypointType.MODULE_PATH)
            for spec in specs()]


if __name__ == "__main__":
    from fundx.core.settings import private_umask

    private_umask()  # the flow runs it starts inherit it: what they create under FUNDX_HOME is private
    serve(*deployments())
