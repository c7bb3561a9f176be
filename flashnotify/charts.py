"""Small server-rendered SVG charts (no JavaScript, no CDN)."""

from django.utils.html import format_html, format_html_join


def line_chart(series, *, labels=(), width=600, height=160, unit="", y_max=None, title="", empty=""):
    """An SVG line chart. `series` is {name: [value or None, ...]} (equal lengths); None leaves a gap.

    A value with no neighbour (one point alone) is drawn as a bar with its value written above it,
    never as a dot; a chart with no value at all says `empty` in its middle. Returns safe HTML.
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
    bar_width = max(4.0, min(24.0, plot_w / max(count, 1) * 0.6 / max(len(series), 1)))
    for index, (colour, (name, points)) in enumerate(zip(colours, series.items())):
        segments, current = [], []
        for i, value in enumerate(points):
            if value is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append((x(i), y(value), value))
        if current:
            segments.append(current)
        for segment in segments:
            if len(segment) == 1:
                cx, cy, value = segment[0]
                left = cx - bar_width * len(series) / 2 + bar_width * index
                left = min(max(left, pad_left + 1), pad_left + plot_w - bar_width - 1)
                lines.append(format_html(
                    '<rect class="fn-bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}{}</title></rect>'
                    '<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="#111827">{}{}</text>',
                    f"{left:.1f}", f"{cy:.1f}", f"{bar_width:.1f}", f"{max(pad_top + plot_h - cy, 1):.1f}", colour,
                    name, f"{value:.3g}", unit, f"{left + bar_width / 2:.1f}", f"{max(cy - 3, pad_top + 9):.1f}",
                    f"{value:.3g}", unit))
            else:
                lines.append(format_html('<polyline fill="none" stroke="{}" stroke-width="2" points="{}">'
                                         '<title>{}</title></polyline>', colour,
                                         " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in segment), name))
    legend = format_html_join("", '<tspan fill="{}" dx="8">■ {}</tspan>',
                              ((c, n) for c, n in zip(colours, series)))
    axis_labels = ""
    if labels:
        step = max(1, len(labels) // 6)
        axis_labels = format_html_join(
            "", '<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>',
            ((f"{x(i):.1f}", height - 4, label) for i, label in enumerate(labels) if i % step == 0))
    if not values and empty:
        lines.append(format_html('<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#374151">{}</text>',
                                 pad_left + plot_w / 2, pad_top + plot_h / 2, empty))
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
