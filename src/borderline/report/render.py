"""A report as JSON, CSV or a self-contained HTML page with SVG charts (matplotlib)."""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

from borderline.report.transparency import (
    DEFINITIONS,
    METHOD,
    SMALL,
    Report,
    Table,
    shown,
)

SMALL_RULE = f'counts from 1 to {SMALL - 1} are shown as "<{SMALL}"'
_COLOURS = ("#2f5f8f", "#c0792b", "#4f8f5a", "#8f3f5f", "#6b6b6b")


def to_data(report: Report) -> dict[str, Any]:
    return {
        "cloud": report.cloud,
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "generated": report.generated.isoformat(timespec="seconds"),
        "small_counts": SMALL_RULE,
        "checkpoints": report.checkpoints(),
        "tables": [
            {
                "key": t.key,
                "title": t.title,
                "columns": list(t.columns),
                "measures": list(t.measures),
                "rows": [[*labels, *(shown(n) for n in counts)] for labels, counts in t.rows],
                "note": t.note,
            }
            for t in report.tables
        ],
        "definitions": [{"term": term, "meaning": text} for term, text in DEFINITIONS],
        "method": list(METHOD),
    }


def to_json(report: Report) -> str:
    return json.dumps(to_data(report), indent=2) + "\n"


def to_csv(report: Report) -> str:
    """Long format, one value a row: `table,key,measure,value`; a key joins a row's labels
    with " / "."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "key", "measure", "value"])
    writer.writerow(["period", "from", "", report.start.isoformat()])
    writer.writerow(["period", "to", "", report.end.isoformat()])
    for cp in report.checkpoints():
        for item in ("origin", "size", "root"):
            writer.writerow(["checkpoint", cp["region"], item, cp[item]])
    for table in report.tables:
        for labels, counts in table.rows:
            for measure, n in zip(table.measures, counts, strict=True):
                writer.writerow([table.key, " / ".join(labels), measure, shown(n)])
    return out.getvalue()


def _bar(axes: Any, at: float, count: int, width: float, colour: str, vertical: bool) -> None:
    """One bar; a count of 1 to 4 is a hatched band from 1 to 4, never a bar of its size."""
    shown_value = shown(count)
    small = isinstance(shown_value, str)
    low, length = (1, SMALL - 2) if small else (0, count)
    style: dict[str, Any] = (
        {"color": "#ffffff", "edgecolor": colour, "hatch": "////", "linestyle": "--", "lw": 0.8}
        if small
        else {"color": colour}
    )
    if vertical:
        axes.bar(at, length, width, bottom=low, **style)
        if count:  # grouped bars: zeros would only clutter the axis
            axes.text(at, low + length, f"{shown_value}", ha="center", va="bottom", fontsize=7)
    else:
        axes.barh(at, length, width, left=low, **style)
        axes.text(low + length, at, f" {shown_value}", va="center", fontsize=9)


def _svg(figure: Any) -> str:
    from matplotlib import rc_context

    buffer = io.StringIO()
    # Fixed ids, so the same report renders to the same bytes (and the same signed hash).
    with rc_context({"svg.hashsalt": "borderline-report", "svg.id": "chart"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)  # headless: no pyplot, no GUI backend is ever chosen
    axes = figure.subplots()
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _limit(counts: list[int]) -> float:
    return max([SMALL, *counts]) * 1.18


def bar_chart_svg(table: Table) -> str:
    """Horizontal bars of the table's first measure, one per row."""
    labels = [" / ".join(labels) for labels, _ in table.rows]
    counts = [c[0] for _, c in table.rows]
    figure, axes = _figure(7.5, 0.42 * len(labels) + 0.9)
    for y, count in enumerate(counts):
        _bar(axes, y, count, 0.7, _COLOURS[0], vertical=False)
    axes.set_yticks(list(range(len(labels))), labels, fontsize=9)
    axes.invert_yaxis()
    axes.set_xlabel(table.measures[0])
    axes.set_xlim(0, _limit(counts))
    figure.tight_layout()
    return _svg(figure)


def trend_chart_svg(table: Table) -> str:
    """Grouped vertical bars: every measure per half-year."""
    halves = [labels[0] for labels, _ in table.rows]
    series = len(table.measures)
    width = 0.8 / series
    figure, axes = _figure(7.5, 3.2)
    for s, measure in enumerate(table.measures):
        for x, (_, counts) in enumerate(table.rows):
            offset = (s - (series - 1) / 2) * width
            _bar(axes, x + offset, counts[s], width, _COLOURS[s % len(_COLOURS)], vertical=True)
        axes.bar(0, 0, 0, color=_COLOURS[s % len(_COLOURS)], label=measure)
    axes.set_xticks(list(range(len(halves))), halves, fontsize=9)
    axes.set_ylim(0, _limit([n for _, counts in table.rows for n in counts]))
    axes.legend(fontsize=8, frameon=False, ncols=min(series, 3), loc="upper left")
    figure.tight_layout()
    return _svg(figure)


_STYLE = """
body { font-family: system-ui, "DejaVu Sans", sans-serif; max-width: 64rem; margin: 2rem auto;
  padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de;
  padding-bottom: 0.2rem; }
.period { color: #57606a; margin-top: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(9.5rem, 1fr));
  gap: 0.6rem; margin: 1rem 0; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6rem 0.8rem; }
.card .n { font-size: 1.6rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .l { color: #57606a; font-size: 0.85rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 0.6rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.55rem; text-align: left;
  vertical-align: top; }
th { vertical-align: bottom; }
th { background: #f6f8fa; font-weight: 600; }
th.n { text-align: right; max-width: 6.5rem; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
figure { margin: 0.5rem 0; }
figure svg { max-width: 100%; height: auto; }
code { font-size: 0.85rem; }
td code { word-break: break-all; }
.note { color: #57606a; font-size: 0.88rem; }
dl dt { font-weight: 600; margin-top: 0.5rem; }
dl dd { margin-left: 1.2rem; }
"""


def _table_html(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in table.columns)
    head += "".join(f'<th class="n">{e(m)}</th>' for m in table.measures)
    if table.rows:
        body = "".join(
            "<tr>"
            + "".join(f"<td>{e(label)}</td>" for label in labels)
            + "".join(f'<td class="n">{e(str(shown(n)))}</td>' for n in counts)
            + "</tr>"
            for labels, counts in table.rows
        )
    else:
        span = len(table.columns) + len(table.measures)
        body = f'<tr><td colspan="{span}">none in this period</td></tr>'
    parts = [f'<h2 id="{e(table.key)}">{e(table.title)}</h2>']
    if table.rows and table.chart is not None:
        chart = bar_chart_svg(table) if table.chart == "bars" else trend_chart_svg(table)
        parts.append(f'<figure role="img" aria-label="{e(table.title)}">{chart}</figure>')
    parts.append(
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
    if table.note:
        parts.append(f'<p class="note">{e(table.note)}</p>')
    return "\n".join(parts)


def _cards(table: Table) -> str:
    e = html.escape
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="n">{e(str(shown(counts[0])))}</div>'
            f'<div class="l">{e(labels[0])}</div></div>'
            for labels, counts in table.rows
        )
        + "</div>"
    )


def _long_date(day: Any) -> str:
    return f"{day.day} {day:%B %Y}"


_NO_LOGS = '<tr><td colspan="4">no region logs</td></tr>'


def to_html(report: Report) -> str:
    e = html.escape
    summary, *tables = report.tables
    checkpoints = "".join(
        f"<tr><td>{e(str(cp['region']))}</td><td><code>{e(str(cp['origin']))}</code></td>"
        f'<td class="n">{cp["size"]}</td><td><code>{e(str(cp["root"]))}</code></td></tr>'
        for cp in report.checkpoints()
    )
    definitions = "".join(
        f"<dt>{e(t[:1].upper() + t[1:])}</dt><dd>{e(d)}</dd>" for t, d in DEFINITIONS
    )
    method = "".join(f"<li>{e(m)}</li>" for m in METHOD)
    period = f"{_long_date(report.start)} to {_long_date(report.end)}"
    title = f"{report.cloud}: transparency report"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}, {e(period)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head><body>
<h1>{e(title)}</h1>
<p class="period">Requests for user data received {e(period)}. Generated
{e(report.generated.isoformat(timespec="seconds"))}. Counts from 1 to {SMALL - 1} are shown
as &ldquo;&lt;{SMALL}&rdquo; and drawn as a hatched band from 1 to {SMALL - 1}.</p>
{_cards(summary)}
{"".join(_table_html(t) + chr(10) for t in tables)}
<h2 id="definitions">Definitions</h2>
<dl>{definitions}</dl>
<h2 id="method">Method</h2>
<ul>{method}</ul>
<h2 id="integrity">Computed at these signed log checkpoints</h2>
<div class="scroll"><table><thead><tr><th>region</th><th>origin</th><th class="n">size</th>
<th>root hash</th></tr></thead><tbody>{checkpoints or _NO_LOGS}</tbody></table></div>
<p class="note">Check a checkpoint with <code>borderline log verify --since</code>, and this
report (its hash, the regions' signatures and the checkpoints above) with
<code>borderline report verify</code> and the signature file published beside it.</p>
</body></html>
"""


RENDERERS = {"html": to_html, "csv": to_csv, "json": to_json}
