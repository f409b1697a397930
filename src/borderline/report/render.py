"""A report as JSON, CSV or a self-contained HTML page with SVG charts (matplotlib)."""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

from borderline.report.transparency import SMALL, Report, Table, shown


def to_data(report: Report) -> dict[str, Any]:
    return {
        "cloud": report.cloud,
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "generated": report.generated.isoformat(timespec="seconds"),
        "small_counts": f'counts from 1 to {SMALL - 1} are shown as "<{SMALL}"',
        "checkpoints": report.checkpoints(),
        "tables": [
            {
                "title": t.title,
                "columns": [*t.columns, "count"],
                "rows": [[*labels, shown(n)] for labels, n in t.rows],
                "note": t.note,
            }
            for t in report.tables
        ],
    }


def to_json(report: Report) -> str:
    return json.dumps(to_data(report), indent=2) + "\n"


def to_csv(report: Report) -> str:
    """Long format, one value a row: `table,key,value`; keys join a row's labels with " / "."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "key", "value"])
    writer.writerow(["period", "from", report.start.isoformat()])
    writer.writerow(["period", "to", report.end.isoformat()])
    for cp in report.checkpoints():
        writer.writerow(["checkpoint", f"{cp['region']} origin", cp["origin"]])
        writer.writerow(["checkpoint", f"{cp['region']} size", cp["size"]])
        writer.writerow(["checkpoint", f"{cp['region']} root", cp["root"]])
    for table in report.tables:
        for labels, n in table.rows:
            writer.writerow([table.title, " / ".join(labels), shown(n)])
    return out.getvalue()


def chart_svg(table: Table) -> str:
    """A horizontal bar chart; a "<5" count is drawn as a hatched bar up to 5, never exact."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [" / ".join(labels) for labels, _ in table.rows]
    values = [shown(n) for _, n in table.rows]
    figure = Figure(figsize=(7.5, 0.45 * len(labels) + 0.9))
    FigureCanvasAgg(figure)  # headless: no pyplot, no GUI backend is ever chosen
    axes = figure.subplots()
    positions = range(len(labels))
    for y, value in zip(positions, values, strict=True):
        small = isinstance(value, str)
        width = SMALL if small else int(value)
        axes.barh(y, width, color="#dbe4f0" if small else "#3b6ea5", hatch="//" if small else None)
        axes.text(width, y, f" {value}", va="center", fontsize=9)
    axes.set_yticks(list(positions), labels, fontsize=9)
    axes.invert_yaxis()
    axes.set_xlabel("count")
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_xlim(0, max([SMALL, *(v for v in values if isinstance(v, int))]) * 1.2)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { word-break: break-all; }
.note { color: #555; font-size: 0.9rem; }
"""


def _table_html(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in (*table.columns, "count"))
    if table.rows:
        body = "".join(
            "<tr>"
            + "".join(f"<td>{e(label)}</td>" for label in labels)
            + f'<td class="n">{e(str(shown(n)))}</td></tr>'
            for labels, n in table.rows
        )
    else:
        body = f'<tr><td colspan="{len(table.columns) + 1}">none</td></tr>'
    parts = [f"<h2>{e(table.title)}</h2>"]
    if table.chart and table.rows:
        parts.append(
            f'<figure role="img" aria-label="{e(table.title)}">{chart_svg(table)}</figure>'
        )
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if table.note:
        parts.append(f'<p class="note">{e(table.note)}</p>')
    return "\n".join(parts)


def to_html(report: Report) -> str:
    e = html.escape
    checkpoints = "".join(
        f"<li><code>{e(str(cp['origin']))}</code>: size {cp['size']},"
        f" root <code>{e(str(cp['root']))}</code></li>"
        for cp in report.checkpoints()
    )
    title = f"{report.cloud} transparency report, {report.start} to {report.end}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(title)}</h1>
<p>Generated {e(report.generated.isoformat(timespec="seconds"))}. Counts from 1 to {SMALL - 1}
are shown as &ldquo;&lt;{SMALL}&rdquo;.</p>
<p>Computed at these signed checkpoints of the regions' transparency logs (check them with
<code>borderline log verify --since</code>):</p>
<ul>{checkpoints or "<li>no region logs</li>"}</ul>
{"".join(_table_html(t) + chr(10) for t in report.tables)}
</body></html>
"""


RENDERERS = {"html": to_html, "csv": to_csv, "json": to_json}
