"""Server-rendered, accessible SVG charts (no JavaScript, no CDN).

Every chart is `<svg role="img" aria-labelledby>` with a `<title>` and a `<desc>` that states all
its numbers, prints its values as visible text, and tells series apart by pattern *and* label,
never by colour alone. Functions return `Markup` ready to place in a template.
"""
from markupsafe import Markup, escape

# (fill colour, pattern kind): solid, hatch (diagonal lines), dots
SERIES_STYLE = {
    "Delivered": ("#137333", "solid"), "In flight": ("#0b5cad", "hatch"), "Errors": ("#b42318", "cross"),
    "Sent": ("#0b5cad", "solid"), "Failed": ("#b42318", "hatch"),
}


def _fmt(n):
    return f"{int(n):,}"


def _patterns(uid, names):
    """<defs> with one pattern per series (solid colour, hatching or cross-hatching)."""
    parts = ["<defs>"]
    for name in names:
        colour, kind = SERIES_STYLE.get(name, ("#5b6675", "solid"))
        pid = f"{uid}-{_slug(name)}"
        if kind == "solid":
            parts.append(f'<pattern id="{pid}" width="4" height="4" patternUnits="userSpaceOnUse">'
                         f'<rect width="4" height="4" fill="{colour}"/></pattern>')
        elif kind == "hatch":
            parts.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse" '
                         f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
                         f'<rect width="3.5" height="6" fill="{colour}"/></pattern>')
        else:
            parts.append(f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
                         f'<rect width="6" height="6" fill="{colour}"/>'
                         f'<path d="M0 0L6 6M6 0L0 6" stroke="#fff" stroke-width="1.2"/></pattern>')
    parts.append("</defs>")
    return "".join(parts)


def _slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def _open(uid, width, height, title, desc, css):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css}" role="img" '
            f'viewBox="0 0 {width} {height}" aria-labelledby="{uid}-title {uid}-desc">'
            f'<title id="{uid}-title">{escape(title)}</title><desc id="{uid}-desc">{escape(desc)}</desc>')


def ring(segments, *, uid="ring", title="Delivery distribution"):
    """A donut of (label, value) segments with the total in the middle and a labelled legend."""
    total = sum(v for _, v in segments)
    desc = "; ".join(f"{label}: {_fmt(v)}" + (f" ({100 * v / total:.1f}%)" if total else "")
                     for label, v in segments) + f". Total {_fmt(total)}."
    width, height, cx, cy, r, stroke = 360, 190, 90, 95, 62, 26
    out = [_open(uid, width, height, title, desc, "ring"), _patterns(uid, [s for s, _ in segments])]
    circumference = 2 * 3.14159265 * r
    out.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#e6ebf1" stroke-width="{stroke}"/>')
    offset = 0.0
    for label, value in segments:
        if not total or not value:
            continue
        length = circumference * value / total
        out.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="url(#{uid}-{_slug(label)})" '
                   f'stroke-width="{stroke}" stroke-dasharray="{length:.2f} {circumference - length:.2f}" '
                   f'stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {cx} {cy})">'
                   f'<title>{escape(label)}: {_fmt(value)}</title></circle>')
        offset += length
    out.append(f'<text x="{cx}" y="{cy - 2}" text-anchor="middle" class="chart-total">{_fmt(total)}</text>'
               f'<text x="{cx}" y="{cy + 16}" text-anchor="middle" class="chart-note">messages</text>')
    for i, (label, value) in enumerate(segments):
        y = 48 + i * 40
        share = f"{100 * value / total:.1f}%" if total else "—"
        out.append(f'<rect x="190" y="{y - 12}" width="16" height="16" rx="3" fill="url(#{uid}-{_slug(label)})" '
                   f'stroke="#334155" stroke-width=".5"/>'
                   f'<text x="214" y="{y}" class="chart-label">{escape(label)}</text>'
                   f'<text x="214" y="{y + 16}" class="chart-value">{_fmt(value)} · {share}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def funnel(rows, *, uid="funnel", title="Campaigns per lifecycle status"):
    """Horizontal bars, one per status, with the count printed after each bar."""
    peak = max((v for _, v in rows), default=0) or 1
    desc = "; ".join(f"{label}: {_fmt(v)}" for label, v in rows) + "."
    bar_h, gap, label_w, width = 18, 8, 88, 360
    height = len(rows) * (bar_h + gap) + gap
    out = [_open(uid, width, height, title, desc, "funnel")]
    for i, (label, value) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = max((width - label_w - 60) * value / peak, 2 if value else 0)
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h - 5}" text-anchor="end" class="chart-label">'
                   f'{escape(label)}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" class="funnel-bar '
                   f'status-{_slug(label)}"><title>{escape(label)}: {_fmt(value)}</title></rect>'
                   f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h - 5}" class="chart-value">{_fmt(value)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def hourly(rows, *, uid="hourly", title=None, zone_label="UTC"):
    """Grouped bars per hour: Sent (solid) and Failed (hatched), labelled axis and legend. The rows'
    hours are already in the zone named `zone_label` (the workspace's; issue 17)."""
    title = title or f"Sent and failed messages per hour, last 24 hours ({zone_label})"
    zone_html = escape(zone_label)
    peak = max((max(s, f) for _, s, f in rows), default=0)
    total_sent, total_failed = sum(s for _, s, _ in rows), sum(f for _, _, f in rows)
    busiest = max(rows, key=lambda r: r[1], default=None)
    desc = (f"Over 24 hours: {_fmt(total_sent)} sent, {_fmt(total_failed)} failed."
            + (f" Busiest hour {busiest[0]:%H}:00 {zone_label} with {_fmt(busiest[1])} sent."
               if busiest and busiest[1] else "")
            + " Per hour (sent/failed): " + ", ".join(f"{h:%H}h {_fmt(s)}/{_fmt(f)}" for h, s, f in rows) + ".")
    width, height, left, top, bottom = 720, 230, 56, 30, 40
    plot_w, plot_h = width - left - 10, height - top - bottom
    scale = peak or 1
    slot = plot_w / max(len(rows), 1)
    out = [_open(uid, width, height, title, desc, "hourly"), _patterns(uid, ["Sent", "Failed"])]
    for frac in (0, .5, 1):  # gridlines with values (an empty day: the zero line only, not "0" three times)
        y = top + plot_h * (1 - frac)
        label = _fmt(scale * frac) if peak else ("0" if frac == 0 else "")
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid-line"/>'
                   + (f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="chart-axis">{label}</text>'
                      if label else ""))
    bar_w = max(slot / 2 - 2, 1)
    for i, (hour, sent, failed) in enumerate(rows):
        x = left + i * slot + 1
        for j, (name, value) in enumerate((("Sent", sent), ("Failed", failed))):
            h = plot_h * value / scale if peak else 0
            out.append(f'<rect x="{x + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                       f'height="{h:.1f}" fill="url(#{uid}-{_slug(name)})">'
                       f'<title>{hour:%H}:00 {zone_html} — {name}: {_fmt(value)}</title></rect>')
        if i % 3 == 0 or i == len(rows) - 1:
            out.append(f'<text x="{x + bar_w:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                       f'class="chart-axis">{hour:%H}h</text>')
    for j, (name, value) in enumerate((("Sent", total_sent), ("Failed", total_failed))):
        x = left + j * 170
        out.append(f'<rect x="{x}" y="6" width="14" height="14" rx="2" fill="url(#{uid}-{_slug(name)})" '
                   f'stroke="#334155" stroke-width=".5"/>'
                   f'<text x="{x + 20}" y="18" class="chart-label">{name} · {_fmt(value)} in 24 h</text>')
    out.append("</svg>")
    return Markup("".join(out))
