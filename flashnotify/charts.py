"""Small server-rendered SVG charts (no JavaScript, no CDN)."""

from django.utils.html import format_html, format_html_join


def line_chart(series, *, labels=(), width=600, height=160, unit="", y_max=None, title=""):
    """An SVG line chart. `series` is {name: [value or None, ...]} (equal lengths); None leaves a gap.

    Returns safe HTML.
    """
    colours = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"]
    values = [v for points in series.values() for v in points if v is not None]
    top = y_max if y_max is not None else (max(values) if values else 1.0) or 1.0
    pad_left, pad_bottom, pad_top = 48, 18, 10
    plot_w, plot_h = width - pad_left - 8, height - pad_bottom - pad_top
    count = max((len(points) for points in series.values()), default=0)

    def x(i):
        return pad_left + (plot_w * i / max(count - 1, 1))

    def y(value):
        return pad_top + plot_h - plot_h * min(value, top) / top

    lines = []
    for colour, (name, points) in zip(colours, series.items()):
        segments, current = [], []
        for i, value in enumerate(points):
            if value is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{x(i):.1f},{y(value):.1f}")
        if current:
            segments.append(current)
        for segment in segments:
            if len(segment) == 1:
                cx, cy = segment[0].split(",")
                lines.append(format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{}</title></circle>',
                                         cx, cy, colour, name))
            else:
                lines.append(format_html('<polyline fill="none" stroke="{}" stroke-width="2" points="{}">'
                                         '<title>{}</title></polyline>', colour, " ".join(segment), name))
    legend = format_html_join("", '<tspan fill="{}" dx="8">■ {}</tspan>',
                              ((c, n) for c, n in zip(colours, series)))
    axis_labels = ""
    if labels:
        step = max(1, len(labels) // 6)
        axis_labels = format_html_join(
            "", '<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>',
            ((f"{x(i):.1f}", height - 4, label) for i, label in enumerate(labels) if i % step == 0))
    return format_html(
        '<svg class="fn-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#f8fafc" stroke="#cbd5e1"/>'
        '<text x="4" y="{}" font-size="10">{}{}</text><text x="4" y="{}" font-size="10">0</text>'
        '{}{}<text x="{}" y="{}" font-size="11">{}</text></svg>',
        title, width, height, width, height, pad_left, pad_top, plot_w, plot_h,
        pad_top + 8, f"{top:.3g}", unit, pad_top + plot_h,
        format_html_join("", "{}", ((line,) for line in lines)), axis_labels, pad_left + 4, pad_top + 12, legend,
    )
