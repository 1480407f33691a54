"""The Apprise channel: any service Apprise knows (chat bots, mail, push), from an ``apprise+<url>``
entry; the title is the notice's subject, the body its e-mail text. What a status Apprise reports
means comes from fundx.core.http_status."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fundx.core.errors import AuthError, PermanentError, TransientError
from fundx.core.http_status import StatusAction, rule_for
from fundx.notify.channel import SCHEME, Channel, bad_entry
from fundx.notify.notice import Notice

_HTTP_STATUS = re.compile(r"error=(\d{3})")


class AppriseChannel(Channel):
    """Any service Apprise knows, from an ``apprise+<url>`` entry."""

    kind = "apprise"

    def __init__(self, *, plugin: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._plugin = plugin

    @classmethod
    def parse(cls, entry: str, *, index: int, timeout: float, literal_ok: bool, setting: str) -> AppriseChannel:
        import apprise

        url = entry[len("apprise+"):]
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        named = f"scheme {scheme!r}" if SCHEME.match(scheme) else "its scheme"
        if not scheme:
            raise bad_entry(index, "apprise+ must be followed by an Apprise URL (scheme://...)", setting=setting)
        try:
            query = urlsplit(url).query
        except ValueError:
            raise bad_entry(index, "not a valid URL", setting=setting) from None
        given = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
        extra = {key: f"{timeout:g}" for key in ("cto", "rto") if key not in given}
        if extra:
            url += ("&" if "?" in url else "?") + urlencode(extra)
        plugin = apprise.Apprise.instantiate(url, asset=_apprise_asset(), suppress_exceptions=True)
        if plugin is None:
            raise bad_entry(index, f"Apprise cannot use this URL ({named} unknown, or the URL incomplete)", setting=setting)
        try:
            shown = str(plugin.url(privacy=True)).split("?", 1)[0]
        except Exception:  # noqa: BLE001 - a plugin that cannot print itself: show the scheme only
            shown = f"{scheme}://…"
        return cls(plugin=plugin, index=index, redacted=f"apprise+{shown}", timeout=timeout)

    def render(self, notice: Notice) -> tuple[str, str, Any]:
        from apprise import NotifyType

        if notice.kind == "recovered":
            notify_type = NotifyType.SUCCESS
        else:
            notify_type = NotifyType.FAILURE if notice.severity == "critical" else NotifyType.WARNING
        return notice.subject, notice.text(), notify_type

    def deliver(self, payload: tuple[str, str, Any]) -> None:
        title, body, notify_type = payload
        with _apprise_log() as records:
            try:
                sent = self._plugin.notify(body=body, title=title, notify_type=notify_type)
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not stop the other channels
                raise PermanentError(f"{self.label}: Apprise failed ({type(exc).__name__})") from None
        if sent:
            return
        said = " ".join(records)
        status = _HTTP_STATUS.search(said)
        if status:
            code = int(status.group(1))
            message = f"{self.label}: the service answered HTTP {code}"
            rule = rule_for(code)
            if rule.action is StatusAction.RETRY and issubclass(rule.error, TransientError):
                raise rule.error(message)
            if rule.action is StatusAction.RENEW:
                raise AuthError(message, action="check the credentials in the Apprise URL")
            raise PermanentError(message, action="check the Apprise URL")  # not found as any other refusal
        if "connection error" in said.lower() or "socket" in said.lower():
            raise TransientError(f"{self.label}: connection error")
        raise TransientError(f"{self.label}: Apprise could not send the notice")


def _apprise_asset() -> Any:
    from apprise import AppriseAsset

    return AppriseAsset(app_id="fundx", app_desc="fundx exchange", app_url="https://fundx.invalid/", async_mode=False)


@contextmanager
def _apprise_log() -> Iterator[list[str]]:
    """The messages Apprise logs at WARNING or above in this thread while the block runs."""
    records: list[str] = []
    thread = threading.get_ident()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                try:
                    records.append(record.getMessage())
                except Exception:  # noqa: BLE001, S110 - a malformed log call in a plugin
                    pass

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("apprise")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
