"""The quarterly cases report as a picture a district head reads: one page, PNG and the same page as PDF.

Three charts per district — the verified share against the plan's 100 % target, the overdue cases and those under
listed supervision, the yuan recovered against the loss established (with the plan's 90 % / 95 % 追回率) — and
the table of every figure (matching.reports), the quarter, the day the figures stand at and when the page was made.
Districts and counts only: no case, no identity appears.

Titles are Chinese, drawn with a CJK font found on the machine (:func:`cjk_font`: WenQuanYi Micro Hei, which the
Makefile installs, or a Noto/Source Han CJK font); matplotlib's own fonts have no Chinese and would draw empty
boxes, so without one the page is drawn with English titles and the districts named by their area codes.
matplotlib's ``Figure`` with the Agg canvas and ``PdfPages``: never pyplot, no display, nothing global.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from matching.reports import TARGETS_RECOVERED

#: CJK families looked for, best first
CJK_FAMILIES = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
                "Source Han Sans CN", "Noto Serif CJK SC", "Droid Sans Fallback", "AR PL UMing CN", "SimHei")
#: where Debian and others put them, for a matplotlib font cache made before the font was installed
CJK_FILES = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")

#: the page's words: Chinese, and English when no CJK font is found
ZH: dict[str, Any] = {
    "title": "{year}年第{q}季度 疑点核查情况 ({quarter})",
    "span": "发现日期 {first} 至 {last} · 数据截至 {as_of}{running} · 生成于 {made} (北京时间)",
    "running": " (本季度进行中)",
    "verified": "核实率 (已核实 / 下发)",
    "target": "目标 100% (2025年专项整治方案: 疑点数据覆盖率达100%)",
    "overdue": "逾期与挂牌督办 (件)", "overdue_bar": "逾期未办结", "escalated": "挂牌督办",
    "money": "追回金额与查实金额 (元)", "confirmed": "查实金额", "recovered": "追回金额",
    "recovery_target": "追回率目标 (2025年专项整治方案)", "recovery_mark": "{share}% 目标",
    "total": "合计", "none": "本季度无下发案件",
    "table": ("区", "下发", "在办", "已核实", "核实率", "逾期", "挂牌督办", "确认", "误报", "追回\n(全额/部分)",
              "移送\n(公安/纪检)", "涉及金额", "查实金额", "追回金额", "追回率"),
}
EN: dict[str, Any] = {
    "title": "Cases of {quarter}: suspects followed up per district",
    "span": "found {first} to {last} · figures as of {as_of}{running} · made {made} (Beijing time)",
    "running": " (quarter running)",
    "verified": "verified share (verified / issued)",
    "target": "target 100 % (2025 national plan)",
    "overdue": "overdue and under listed supervision (cases)", "overdue_bar": "overdue", "escalated": "escalated",
    "money": "recovered vs loss established (yuan)", "confirmed": "established", "recovered": "recovered",
    "recovery_target": "recovery targets (2025 national plan)", "recovery_mark": "{share} % target",
    "total": "total", "none": "no cases issued this quarter",
    "table": ("district", "issued", "open", "verified", "verified %", "overdue", "escalated", "confirmed",
              "false +", "recovered\n(full/part)", "referred\n(police/disc.)", "at risk", "established",
              "recovered ¥", "recovered %"),
}


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of a CJK font matplotlib can draw with, or None (then the page is in English)."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return family
    for path in CJK_FILES:  # installed after matplotlib's font cache was made
        if Path(path).is_file():
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
            return font_manager.FontProperties(fname=path).get_name()
    return None


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _name(district: str, font: str | None, words: dict[str, Any]) -> str:
    if district == "合计":
        return words["total"]
    if font or district.isascii():
        return district
    from matching.orders import area_of

    code = area_of(district)  # without a CJK font a district is named by its code
    return f"{'ext. ' if district.startswith('外地') else ''}{code or '?'}"


def render(report: Any) -> tuple[bytes, bytes]:
    """The report's page as PNG bytes and as PDF bytes (the same page)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.backends.backend_pdf import PdfPages

    font = cjk_font()
    params: dict[str, Any] = {"axes.unicode_minus": False}
    if font:  # the fonts are resolved when the page is drawn: the whole of it inside the context
        params |= {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"]}
    with matplotlib.rc_context(cast(Any, params)):
        fig = _page(report, font)
        FigureCanvasAgg(fig)
        png = io.BytesIO()
        fig.savefig(png, format="png", metadata={"Title": f"cases report {report.quarter}", "Software": "fundx"})
        pdf = io.BytesIO()
        with PdfPages(pdf, metadata={"Title": f"cases report {report.quarter}", "Creator": "fundx"}) as pages:
            pages.savefig(fig)
    return png.getvalue(), pdf.getvalue()


def _page(report: Any, font: str | None) -> Any:
    import numpy as np
    from matplotlib.figure import Figure

    from fundx.core.timeutil import SHANGHAI

    words = ZH if font else EN
    rows = report.districts
    n = len(rows)
    chart_h = max(2.2, 0.34 * n + 1.0)
    table_h = 0.36 * (n + 2) + 0.4
    height = 1.2 + chart_h + table_h + 0.3
    width = 16.0
    fig = Figure(figsize=(width, height), dpi=100)
    made = report.made_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    fig.text(0.5, 1 - 0.35 / height, words["title"].format(year=report.first.year, q=(report.first.month + 2) // 3,
                                                           quarter=report.quarter),
             ha="center", va="center", fontsize=19)  # no bold: WenQuanYi Micro Hei has none
    fig.text(0.5, 1 - 0.72 / height, words["span"].format(
        first=report.first.isoformat(), last=report.last.isoformat(), as_of=report.as_of.isoformat(),
        running=words["running"] if report.running else "", made=made), ha="center", va="center", fontsize=10,
        color="#555555")
    top = 1 - 1.45 / height
    bottom = 1 - (1.2 + chart_h) / height
    fig.subplots_adjust(left=1.3 / width, right=1 - 0.3 / width, top=top, bottom=bottom + 0.35 / height,
                        wspace=0.08)
    names = [_name(d.district, font, words) for d in rows]
    y = np.arange(n)[::-1].astype(float)
    share_ax, late_ax, money_ax = fig.subplots(1, 3, sharey=True)
    _shares(share_ax, rows, y, words, report.total)
    _overdue(late_ax, rows, y, words)
    _amounts(money_ax, rows, y, words, report.total)
    share_ax.set_yticks(y, names)
    if report.total.issued == 0:
        fig.text(0.5, (top + bottom) / 2, words["none"], ha="center", va="center", fontsize=14, color="#b71c1c")
    _table(fig, report, words, font, height, table_h)
    return fig


def _shares(ax: Any, rows: Any, y: Any, words: dict[str, Any], total: Any) -> None:
    shares = [d.verified_share for d in rows]
    colours = ["#2e7d32" if s is not None and s >= 1 else "#f9a825" if s is not None and s >= 0.8 else "#c62828"
               for s in shares]
    ax.barh(y, [0 if s is None else 100 * s for s in shares], height=0.6, color=colours)
    for yy, d, s in zip(y, rows, shares):
        text = "–" if s is None else f"{100 * s:.0f}%  ({d.verified}/{d.issued})"
        ax.text(2 + (0 if s is None else 100 * s), yy, text, va="center", fontsize=8)
    ax.axvline(100, color="#c62828", linestyle="--", linewidth=1.2, label=words["target"])
    ax.set_xlim(0, 145)
    ax.set_xticks(range(0, 101, 25))
    ax.set_title(f"{words['verified']} · {words['total']} {_percent(total.verified_share)}", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=True, framealpha=0.9)
    _grid(ax)


def _overdue(ax: Any, rows: Any, y: Any, words: dict[str, Any]) -> None:
    overdue = [d.overdue for d in rows]
    escalated = [d.escalated for d in rows]
    ax.barh(y + 0.18, overdue, height=0.34, color="#ef6c00", label=words["overdue_bar"])
    ax.barh(y - 0.18, escalated, height=0.34, color="#6a1b9a", label=words["escalated"])
    top = max([*overdue, *escalated, 1])
    for yy, d, a, b in zip(y, rows, overdue, escalated):
        if not d.issued:
            continue
        ax.text(a + top * 0.02, yy + 0.18, str(a), va="center", fontsize=8)
        ax.text(b + top * 0.02, yy - 0.18, str(b), va="center", fontsize=8)
    ax.set_xlim(0, top * 1.25)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(words["overdue"], fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    _grid(ax)


def _amounts(ax: Any, rows: Any, y: Any, words: dict[str, Any], total: Any) -> None:
    confirmed = [d.amount_confirmed for d in rows]
    recovered = [d.amount_recovered for d in rows]
    ax.barh(y, confirmed, height=0.6, color="#cfd8dc", label=words["confirmed"])
    ax.barh(y, recovered, height=0.36, color="#1565c0", label=words["recovered"])
    for share, colour in zip(TARGETS_RECOVERED, ("#757575", "#c62828")):  # where 90 % and 95 % of the loss would be
        marked = [(c * share, yy) for c, yy in zip(confirmed, y) if c > 0]
        if marked:
            ax.scatter([m[0] for m in marked], [m[1] for m in marked], marker="|", s=260, color=colour, zorder=3,
                       label=words["recovery_mark"].format(share=round(100 * share)))
    top = max([*confirmed, *recovered, 1.0])
    for yy, d in zip(y, rows):
        if d.amount_confirmed or d.amount_recovered:
            ax.text(max(d.amount_confirmed, d.amount_recovered) + top * 0.02, yy,
                    f"{_money(d.amount_recovered)} / {_money(d.amount_confirmed)}  {_percent(d.recovered_share)}",
                    va="center", fontsize=8)
    ax.set_xlim(0, top * 1.6)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:,.0f}")
    ax.set_title(f"{words['money']} · {words['total']} {_percent(total.recovered_share)}", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False, title=words["recovery_target"], title_fontsize=8,
              markerscale=0.6)
    _grid(ax)


def _grid(ax: Any) -> None:
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _table(fig: Any, report: Any, words: dict[str, Any], font: str | None, height: float, table_h: float) -> None:
    cells = []
    for d in report.rows:
        cells.append([_name(d.district, font, words), str(d.issued), str(d.open), str(d.verified),
                      _percent(d.verified_share), str(d.overdue), str(d.escalated), str(d.confirmed),
                      str(d.false_positive), f"{d.recovered} ({d.recovered_full}/{d.recovered_partial})",
                      f"{d.referred} ({d.referred_police}/{d.referred_discipline})", _money(d.amount_at_risk),
                      _money(d.amount_confirmed), _money(d.amount_recovered), _percent(d.recovered_share)])
    ax = fig.add_axes((0.3 / 16, 0.25 / height, 1 - 0.6 / 16, (table_h - 0.2) / height))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=list(words["table"]), loc="upper center", cellLoc="right",
                     colLoc="center", bbox=(0, 0, 1, 1))
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    last = len(cells)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if r == 0:
            cell.set_facecolor("#dde3ea")
        elif r == last:
            cell.set_facecolor("#eef1f5")
        if c == 0:
            cell.set_text_props(ha="left")
