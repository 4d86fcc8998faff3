"""The daily report's document (delivery.reporting) as text and as one HTML page.

Text: 80 columns at most, the verdict first, for the SNS mail and a terminal. HTML: one
self-contained page (no script, no external resource; charts as inline SVG) that reads on a
phone as on a desktop. Both are functions of the document alone, so the same document always
renders to the same bytes, and `sluice report` renders what the function renders.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

WIDTH: Final = 80
LABEL: Final = 20
"""Width of a row's label in the text report."""
BAR: Final = 30
"""Widest bar of the text report's hourly chart."""


# -- numbers --------------------------------------------------------------------------------


def count(value: int) -> str:
    return f"{value:,}"


def size(value: int | None) -> str:
    """Bytes in decimal units, as S3 and MinIO bill them."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{value} B"  # not reached


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def share(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if value < 1 else "100%"


def known(fig: Mapping[str, Any]) -> bool:
    return fig.get("value") is not None or "unknown" not in fig


def _by_reason(reasons: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count(n)}" for reason, n in reasons.items())


def _fig_text(fig: Mapping[str, Any], render: Any) -> str:
    return render(fig["value"]) if known(fig) else f"unknown: {fig['unknown']}"


# -- the parts both formats show -------------------------------------------------------------


def title(document: Mapping[str, Any]) -> str:
    period = document["period"]
    span = "complete" if period["complete"] else f"so far, to {period['end'][11:16]}"
    return f"Sluice daily report, {document['deployment']}, {document['day']} (UTC, {span})"


def file_rows(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    files = document["files"]
    return [
        (
            "landed",
            count(files["landed"]),
            f"by S3 {count(files['landed_by_s3'])}, by API {count(files['landed_by_api'])}",
        ),
        ("forwarded", count(files["forwarded"]), "sent to Firehose"),
        (
            "delivered",
            count(files["delivered"]),
            f"of which by a forced replay {count(files['redelivered'])}",
        ),
        ("excluded", count(files["excluded"]["total"]), _by_reason(files["excluded"]["by_reason"])),
        (
            "quarantined",
            count(files["quarantined"]["total"]),
            _by_reason(files["quarantined"]["by_reason"]),
        ),
        ("too large", count(files["too_large"]), ""),
        ("versions gone", count(files["versions_gone"]), ""),
        ("still pending", count(files["pending"]), ""),
        ("parked", count(files["parked"]), ""),
        ("missing", count(files["missing"]), ""),
        ("delivered twice", count(files["delivered_twice"]), ""),
        ("checksum mismatch", count(files["checksum_mismatch"]), ""),
    ]


def byte_rows(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    data = document["bytes"]
    ratio = data["compression_ratio"]
    return [
        ("landed", size(data["landed"]), ""),
        ("files delivered", size(data["delivered"]), ""),
        ("archives", size(data["archives"]), "" if ratio is None else f"compression {ratio:g}x"),
    ]


def window_rows(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    w = document["windows"]
    return [
        ("staged", count(w["staged"]), "windows Firehose wrote on the day"),
        ("delivered", count(w["delivered"]), f"{count(w['files_archived'])} files"),
        ("empty", count(w["empty"]), "duplicates only"),
        ("parked", count(w["parked"]), ""),
        ("waiting", count(w["waiting"]), ""),
        ("archive parts", count(w["archive_parts"]), ""),
        (
            "counted redrives",
            count(w["redrives"]),
            f"toward parking, of {count(w['windows_redriven'])} "
            f"window{'' if w['windows_redriven'] == 1 else 's'}",
        ),
    ]


def latency_rows(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    latency = document["latency"]
    objective = latency["objective"]

    def verdict(met: bool | None) -> str:
        return "-" if met is None else "met" if met else "MISSED"

    slowest = latency["slowest_hour"]
    return [
        ("files measured", count(latency["files"]), "S3 event to MinIO"),
        ("p50", seconds(latency["p50_seconds"]), ""),
        (
            "p95",
            seconds(latency["p95_seconds"]),
            f"objective {objective['p95_seconds']} s: {verdict(objective['p95_met'])}, "
            f"{share(objective['share_within_p95'])} within",
        ),
        (
            "p99.9",
            seconds(latency["p999_seconds"]),
            f"objective {objective['p999_seconds']} s: {verdict(objective['p999_met'])}, "
            f"{share(objective['share_within_p999'])} within",
        ),
        (
            "slowest hour",
            "-" if slowest is None else f"{slowest['hour']}:00",
            "" if slowest is None else f"p95 {seconds(slowest['p95_seconds'])}",
        ),
    ]


def operation_rows(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    ops = document["operations"]
    alarms = ops["alarms_fired"]
    dlqs = ops["dlq_depths"]
    minio = ops["minio_unavailable_minutes"]
    requeued = ops["requeued_records"]
    busiest = ops["busiest_minute"]
    headroom = ops["firehose_quota_headroom"]
    duplicates = ops["duplicates_absorbed"]

    def alarm_list(rows: Sequence[Mapping[str, Any]]) -> str:
        return ", ".join(f"{r['alarm']} x{r['times']}" for r in rows) or "none"

    def depths(values: Mapping[str, int]) -> str:
        return ", ".join(f"{name} {count(n)}" for name, n in values.items())

    def headroom_text(value: float) -> str:
        return (
            f"{value * 100:.1f}% ({headroom['quota']} of {headroom['stream']} at "
            f"{headroom['minute']})"
        )

    at = dlqs["at"]
    dlq_label = "DLQs at 24:00" if at[:10] != document["day"] else f"DLQs at {at[11:16]}"
    redrives = ops["redrives"]

    def redrive_text(value: Mapping[str, int]) -> str:
        return (
            f"from the DLQ {count(value['from_dlq'])} (for the environment "
            f"{count(value['of_which_environment'])}), re-invoked {count(value['reinvoked'])}, "
            f"parked {count(value['parked'])}"
        )

    minio_text = (
        f"{minio['value']:g} min ({minio['failed_probes']} of {minio['probes']} probes failed)"
        if known(minio)
        else f"unknown: {minio['unknown']}"
    )
    return [
        ("alarms fired", "", _fig_text(alarms, alarm_list)),
        (dlq_label, "", _fig_text(dlqs["depths"], depths)),
        ("windows redriven", "", _fig_text(redrives, redrive_text)),
        ("MinIO unavailable", "", minio_text),
        (
            "requeued records",
            count(requeued["value"]),
            f"from {count(requeued['error_objects'])} errors/ objects",
        ),
        (
            "busiest minute",
            "-" if busiest is None else busiest["minute"],
            "" if busiest is None else f"{count(busiest['files'])} files, {size(busiest['bytes'])}",
        ),
        ("Firehose headroom", "", _fig_text(headroom, headroom_text)),
        (
            "SQS duplicates",
            "",
            _fig_text(duplicates["sqs_redeliveries"], lambda v: f"{count(v)} absorbed"),
        ),
        ("Firehose duplicates", "", _fig_text(duplicates["firehose_duplicates"], count)),
        ("empty windows", count(duplicates["empty_windows"]), "duplicates only, dropped"),
    ]


def producer_rows(document: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    producers = document["producers"]
    rows = [
        (p["producer"], count(p["files"]), size(p["bytes"]), count(p["rejected"]))
        for p in producers["top"]
    ]
    others = producers["others"]
    if others["producers"]:
        rows.append(
            (
                f"({others['producers']} others)",
                count(others["files"]),
                size(others["bytes"]),
                count(others["rejected"]),
            )
        )
    return rows


# -- text -----------------------------------------------------------------------------------


def _wrap(text: str, indent: str = "", first: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first or indent,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def _section(name: str, rows: Iterable[tuple[str, str, str]]) -> list[str]:
    lines = ["", name]
    for label, value, note in rows:
        head = f"  {label:<{LABEL}}{value:>9}"
        if not note:
            lines.append(head.rstrip())
            continue
        if value:
            lines += _wrap(note, " " * (LABEL + 14), head + "   ")
        else:
            lines += _wrap(note, " " * (LABEL + 2), f"  {label:<{LABEL}}")
    return lines


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


def text(document: Mapping[str, Any]) -> str:
    """The report in at most 80 columns, the verdict first."""
    verdict = document["verdict"]
    lines = _wrap(verdict["sentence"])
    lines += _wrap(title(document))
    for item in verdict["attention"][1:]:
        lines += _wrap(item, "  ", "- ")
    for manifest in document["files"]["unreadable_manifests"]:
        lines += _wrap(f"unreadable manifest: {manifest}", "  ", "- ")
    lines += _section("Files", file_rows(document))
    lines += _section("Bytes", byte_rows(document))
    lines += _section("Windows", window_rows(document))
    lines += _section("Latency", latency_rows(document))
    producers = document["producers"]
    lines += [
        "",
        f"Producers (top {len(producers['top'])} of {producers['count']} by files)",
        f"  {'producer':<34}{'files':>12}{'bytes':>12}{'rejected':>12}",
    ]
    lines += [
        f"  {_short(name, 33):<34}{files:>12}{data:>12}{rejected:>12}"
        for name, files, data, rejected in producer_rows(document)
    ]
    lines += _section("Operations", operation_rows(document))
    lines += ["", "Hours (UTC)", f"  hour {'files':>9}  {'landed':<{BAR}}  {'p95':>9}"]
    hours = document["hours"]
    widest = max((hour["files"] for hour in hours), default=0)
    for hour in hours:
        bar = "#" * (round(hour["files"] / widest * BAR) if widest else 0)
        lines.append(
            f"  {hour['hour']}  {count(hour['files']):>9}  {bar:<{BAR}}  "
            f"{seconds(hour['latency_p95_seconds']):>9}".rstrip()
        )
    return "\n".join(line.rstrip() for line in lines) + "\n"


# -- HTML -----------------------------------------------------------------------------------

STYLE: Final = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1b1f24;background:#f4f6f8}
main{max-width:1100px;margin:0 auto;padding:12px}
h1{font-size:1.15rem;margin:.5rem 0}
h2{font-size:1rem;margin:0 0 .5rem}
.verdict{padding:14px 16px;border-radius:8px;font-weight:600;font-size:1.05rem;color:#fff}
.ok{background:#1a7f37}.attention{background:#9a6700}.not_ok{background:#cf222e}
.verdict ul{margin:.4rem 0 0 1.1rem;padding:0;font-weight:400}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:12px;
margin-top:12px}
section{background:#fff;border-radius:8px;padding:12px 14px;min-width:0}
table{width:100%;border-collapse:collapse;table-layout:fixed}
td,th{padding:3px 4px;vertical-align:top;overflow-wrap:anywhere;text-align:left}
th{font-weight:600;color:#57606a;font-size:.85rem}
td.n,th.n{text-align:right;white-space:nowrap;width:6.5em}
td.note{color:#57606a;font-size:.9rem}
tr+tr td{border-top:1px solid #eaeef2}
svg{display:block;width:100%;height:auto;max-width:760px;margin:0 auto}
.chart text{font-size:16px;fill:#57606a}
.share text{font-size:15px;fill:#1b1f24}
td.name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
@media (max-width:480px){td.name{white-space:normal;overflow-wrap:anywhere}}
.wide{grid-column:1/-1}
p.small{color:#57606a;font-size:.85rem;margin:.5rem 0 0}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(rows: Iterable[tuple[str, str, str]]) -> str:
    body = "".join(
        f'<tr><td>{_e(label)}</td><td class="n">{_e(value)}</td>'
        f'<td class="note">{_e(note)}</td></tr>'
        for label, value, note in rows
    )
    return f'<table><colgroup><col><col style="width:6.5em"><col></colgroup>{body}</table>'


def _card(name: str, inner: str, *, wide: bool = False) -> str:
    classes = ' class="wide"' if wide else ""
    return f"<section{classes}><h2>{_e(name)}</h2>{inner}</section>"


def _bars_svg(
    label: str,
    values: Sequence[float | None],
    *,
    unit: str,
    line: float | None = None,
    line_label: str = "",
) -> str:
    """Bars per hour, 24 slots, in a viewBox that scales to the page's width."""
    width, height, left, bottom, top = 600, 230, 52, 26, 16
    slot = (width - left) / 24
    known_values = [v for v in values if v is not None]
    ceiling = max([*known_values, line or 0.0, 1.0])
    scale = (height - bottom - top) / ceiling
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(label)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{_e(label)}</title>",
        f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
        'stroke="#8c959f"/>',
        f'<text x="{left - 4}" y="{top + 6}" text-anchor="end">{_e(_tick(ceiling))}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    for hour in range(24):
        x = left + hour * slot
        value = values[hour] if hour < len(values) else None
        if value:
            bar = value * scale
            parts.append(
                f'<rect class="bar" x="{x + 2:.1f}" y="{height - bottom - bar:.1f}" '
                f'width="{slot - 4:.1f}" height="{bar:.1f}" fill="#0969da">'
                f"<title>{hour:02d}:00 {_e(_tick(value))} {_e(unit)}</title></rect>"
            )
        if hour % 6 == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{hour:02d}</text>"
            )
    if line is not None:
        y = height - bottom - line * scale
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="#cf222e" '
            'stroke-dasharray="6 4"/>'
            f'<text x="{width - 4}" y="{y - 4:.1f}" text-anchor="end">{_e(line_label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _share_svg(document: Mapping[str, Any]) -> str:
    """Two horizontal bars: the share of files within each latency objective."""
    objective = document["latency"]["objective"]
    rows = [
        (
            f"within {objective['p95_seconds']} s (p95 objective 95%)",
            objective["share_within_p95"],
            0.95,
        ),
        (
            f"within {objective['p999_seconds']} s (p99.9 objective 99.9%)",
            objective["share_within_p999"],
            0.999,
        ),
    ]
    width, row = 360, 46
    parts = [
        f'<svg class="share" viewBox="0 0 {width} {row * len(rows) + 4}" role="img" '
        'aria-label="Share of files within the latency objectives">'
        "<title>Share of files within the latency objectives</title>"
    ]
    for n, (label, value, target) in enumerate(rows):
        y = n * row + 4
        filled = 0.0 if value is None else value * width
        colour = "#1a7f37" if value is not None and value >= target else "#cf222e"
        parts.append(
            f'<rect x="0" y="{y + 20}" width="{width}" height="14" fill="#eaeef2"/>'
            f'<rect class="bar" x="0" y="{y + 20}" width="{filled:.1f}" height="14" '
            f'fill="{colour}"/>'
            f'<line x1="{target * width:.1f}" y1="{y + 16}" x2="{target * width:.1f}" '
            f'y2="{y + 38}" stroke="#1b1f24"/>'
            f'<text x="0" y="{y + 14}">{_e(label)}: {_e(share(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def page(document: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    verdict = document["verdict"]
    # The first item is in the sentence already.
    attention = "".join(f"<li>{_e(item)}</li>" for item in verdict["attention"][1:])
    unreadable = "".join(
        f"<li>unreadable manifest: {_e(key)}</li>"
        for key in document["files"]["unreadable_manifests"]
    )
    notes = f"<ul>{attention}{unreadable}</ul>" if attention or unreadable else ""
    hours = document["hours"]
    objective = document["latency"]["objective"]
    files_chart = _bars_svg(
        "Files landed per hour (UTC)", [h["files"] for h in hours], unit="files"
    )
    latency_chart = _bars_svg(
        "Latency p95 per hour (UTC), seconds",
        [h["latency_p95_seconds"] for h in hours],
        unit="s",
        line=float(objective["p95_seconds"]),
        line_label=f"objective {objective['p95_seconds']} s",
    )
    producers = document["producers"]
    producer_table = (
        '<table><colgroup><col><col style="width:3.6em"><col style="width:5.6em">'
        '<col style="width:5.4em"></colgroup><tr><th>producer</th><th class="n">files</th>'
        '<th class="n">bytes</th><th class="n">rejected</th></tr>'
        + "".join(
            f'<tr><td class="name" title="{_e(name)}">{_e(name)}</td><td class="n">{_e(files)}'
            f'</td><td class="n">{_e(data)}</td><td class="n">{_e(rejected)}</td></tr>'
            for name, files, data, rejected in producer_rows(document)
        )
        + "</table>"
    )
    cards = [
        _card("Files", _table(file_rows(document))),
        _card("Latency", _share_svg(document) + _table(latency_rows(document))),
        _card("Files landed per hour (UTC)", files_chart, wide=True),
        _card("Latency p95 per hour (UTC), seconds", latency_chart, wide=True),
        _card("Bytes", _table(byte_rows(document))),
        _card("Windows", _table(window_rows(document))),
        _card(
            f"Producers (top {len(producers['top'])} of {producers['count']} by files)",
            producer_table,
        ),
        _card("Operations", _table(operation_rows(document)), wide=True),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title(document))}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{_e(title(document))}</h1>"
        f'<div class="verdict {_e(verdict["status"])}" id="verdict">{_e(verdict["sentence"])}'
        f"{notes}</div>"
        f'<div class="grid">{"".join(cards)}</div>'
        '<p class="small">Figures and their sources: docs/report.md. Times are UTC.</p>'
        "</main></body></html>\n"
    )
