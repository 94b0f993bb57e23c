#!/usr/bin/env python3
"""Turn benchmark results into an SVG bar chart (Python standard library only).

Usage:
    scripts/perf_chart.py docs/perf-results.json docs/perf-chart.svg
    pubq bench fanout --json > a.json; pubq bench fanout --consumer longpoll --json > b.json
    scripts/perf_chart.py --from-bench a.json b.json -o docs/bench-chart.svg

Input (see docs/perf-results.json): {"title", "subtitle"?, "panels": [{"title",
"unit", "groups": [{"label", "bars": [{"system", "value"}]}]}]}. Each panel is a
group of horizontal bars; bars of the same system share a colour across panels.
With --from-bench, the inputs are `pubq bench --json` reports (one JSON object
per line, any number of files) and become one panel of delivered copies/s.

The SVG names a generic font family and embeds nothing, so it renders the same
wherever it is viewed and needs no fonts installed to be written.
"""

import argparse
import json
import sys
from xml.sax.saxutils import escape

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]

WIDTH = 860
MARGIN = 20
LABEL_W = 170  # left column: group label and system names
BAR_H = 18
BAR_GAP = 4
GROUP_GAP = 14
PANEL_GAP = 28
TITLE_H = 26
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""


def fmt(value, unit):
    """1234567 -> '1,234,567 copies/s'."""
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.1f}"
    else:
        text = f"{int(value):,}"
    return f"{text} {unit}".strip()


def colours(panels):
    """One colour per system, in order of first appearance."""
    seen = {}
    for panel in panels:
        for group in panel["groups"]:
            for bar in group["bars"]:
                seen.setdefault(bar["system"], PALETTE[len(seen) % len(PALETTE)])
    return seen


def render(doc):
    panels = doc["panels"]
    palette = colours(panels)
    out = []
    y = MARGIN
    out.append(f'<text x="{MARGIN}" y="{y + 16}" {FONT} font-size="17" font-weight="bold">'
               f'{escape(doc.get("title", ""))}</text>')
    y += TITLE_H
    if doc.get("subtitle"):
        out.append(f'<text x="{MARGIN}" y="{y + 10}" {FONT} font-size="11" fill="#555">'
                   f'{escape(doc["subtitle"])}</text>')
        y += 22
    # Legend.
    x = MARGIN
    for system, colour in palette.items():
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{y + 10}" {FONT} font-size="12">{escape(system)}</text>')
        x += 16 + 7.5 * len(system) + 18
    y += 26
    bar_area = WIDTH - MARGIN * 2 - LABEL_W - 130  # room for the value label
    for panel in panels:
        out.append(f'<text x="{MARGIN}" y="{y + 14}" {FONT} font-size="14" font-weight="bold">'
                   f'{escape(panel["title"])}</text>')
        y += TITLE_H
        peak = max((b["value"] for g in panel["groups"] for b in g["bars"]), default=1) or 1
        for group in panel["groups"]:
            bars = group["bars"]
            group_h = len(bars) * (BAR_H + BAR_GAP) - BAR_GAP
            out.append(f'<text x="{MARGIN}" y="{y + group_h / 2 + 4}" {FONT} font-size="12" '
                       f'font-weight="bold">{escape(group["label"])}</text>')
            first = bars[0]["value"] if bars else 0
            for bar in bars:
                w = max(1.0, bar_area * bar["value"] / peak)
                x0 = MARGIN + LABEL_W
                colour = palette[bar["system"]]
                out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}">'
                           f'<title>{escape(bar["system"])}: {escape(fmt(bar["value"], panel.get("unit", "")))}</title></rect>')
                label = fmt(bar["value"], panel.get("unit", ""))
                if first and bar is not bars[0]:
                    label += f"  ({bar['value'] / first:.2f}×)"
                out.append(f'<text x="{x0 + w + 6:.1f}" y="{y + BAR_H - 5}" {FONT} font-size="11">'
                           f'{escape(label)}</text>')
                y += BAR_H + BAR_GAP
            y += GROUP_GAP - BAR_GAP
        y += PANEL_GAP
    height = y + MARGIN - PANEL_GAP
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n')
    return head + "\n".join(out) + "\n</svg>\n"


def from_bench(paths):
    """`pubq bench --json` reports -> one panel of delivered copies/s."""
    bars = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                report = json.loads(line)
                settings = report.get("settings", {})
                system = f"pubq {settings.get('consumer', report['workload'])}"
                if "ack" in settings:
                    system += f" ack={settings['ack']}"
                bars.append({"system": system, "value": round(report["delivered_rate"]),
                             "label": report["workload"]})
    groups = {}
    for bar in bars:
        groups.setdefault(bar.pop("label"), []).append(bar)
    return {
        "title": "pubq bench",
        "subtitle": "delivered copies/s per workload (pubq bench --json)",
        "panels": [{"title": "Delivered copies/s (higher is better)", "unit": "copies/s",
                    "groups": [{"label": k, "bars": v} for k, v in groups.items()]}],
    }


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="results JSON (or bench reports with --from-bench)")
    parser.add_argument("output", nargs="?", help="SVG file to write (or -o)")
    parser.add_argument("-o", "--out", help="SVG file to write")
    parser.add_argument("--from-bench", action="store_true", help="inputs are `pubq bench --json` reports")
    args = parser.parse_args(argv)
    inputs = list(args.inputs)
    out = args.out or args.output
    if out is None and len(inputs) > 1:
        out = inputs.pop()
    if out is None:
        parser.error("name the SVG file to write")
    if args.from_bench:
        doc = from_bench(inputs)
    else:
        if len(inputs) != 1:
            parser.error("one results JSON at a time (or --from-bench)")
        with open(inputs[0], encoding="utf-8") as f:
            doc = json.load(f)
    svg = render(doc)
    with open(out, "w", encoding="utf-8") as f:
        f.write(svg)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
