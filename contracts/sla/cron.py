"""The day fields of a cron expression: which nights a feed's delivery is due.

A frequency's ``schedule`` is a five-field cron (minute hour day month weekday) with numbers, ranges,
lists and steps; only the day fields decide whether a night is due (cron's rule: when both the day of
the month and the weekday are restricted, either matching is enough). :func:`check_cron` checks a
schedule against its period (a daily feed fires every day, a weekly one on one weekday, a monthly
one on one day of the month) and gives its time of day.
"""

from __future__ import annotations

from datetime import date, time


def cron_field(text: str, low: int, high: int) -> set[int] | None:
    """The values of one cron field; None for ``*``. ValueError when it is not understood."""
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(part)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(body)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return values


def _cron_parts(expr: str) -> tuple[set[int] | None, set[int] | None, set[int] | None, set[int] | None, set[int] | None]:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(expr)
    minute = cron_field(fields[0], 0, 59)
    hour = cron_field(fields[1], 0, 23)
    dom = cron_field(fields[2], 1, 31)
    month = cron_field(fields[3], 1, 12)
    dow = cron_field(fields[4], 0, 7)
    if dow is not None:
        dow = {d % 7 for d in dow}  # 0 and 7 are Sunday
    return minute, hour, dom, month, dow


def check_cron(expr: str, period: str, fail) -> tuple[str, time | None]:
    """``expr`` checked against ``period`` (``fail(message)`` gives the error to raise): the schedule with its
    white space made single, and its time of day when it names one hour and one minute, else None."""
    try:
        minute, hour, dom, month, dow = _cron_parts(expr.strip())
    except ValueError:
        raise fail(f"{expr!r} is not a cron expression of five numeric fields (minute hour day month weekday)") from None
    at = time(min(hour), min(minute)) if hour and minute and len(hour) == 1 and len(minute) == 1 else None
    if period == "day" and (dom, month, dow) != (None, None, None):
        raise fail(f"a daily feed's schedule must fire every day, not {expr!r}")
    if period == "week" and not (dom is None and month is None and dow is not None and len(dow) == 1):
        raise fail(f"a weekly feed's schedule names one weekday (\"0 2 * * 2\"), not {expr!r}")
    if period == "month" and not (dow is None and month is None and dom is not None and len(dom) == 1):
        raise fail(f"a monthly feed's schedule names one day of the month (\"0 2 6 * *\"), not {expr!r}")
    return " ".join(expr.split()), at


def cron_day_matches(expr: str, night: date) -> bool:
    """Whether ``expr``'s day fields make ``night`` a due night."""
    _, _, dom, month, dow = _cron_parts(expr)
    if month is not None and night.month not in month:
        return False
    weekday = night.isoweekday() % 7  # cron: Sunday = 0
    if dom is not None and dow is not None:
        return night.day in dom or weekday in dow  # cron's rule: either restricted field matches
    if dom is not None:
        return night.day in dom
    if dow is not None:
        return weekday in dow
    return True
