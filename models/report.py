"""The evaluation of one trained model as a self-contained HTML page (models/<version>/report.html).

Pure Python, no Spark: it reads metrics.json (written by models/train.py) and, when a
version is being served, that version's metrics.json, and renders the training counts,
the holdout metrics of every model and baseline, the comparison with the served model, a
bar chart of MAP@k (inline SVG), the FP-Growth summary, the quality gate's verdict, the
night's attribution of sales to the recommendations per A/B arm (experiments/attribution.py) and
the parameters. No external assets and no JavaScript: the file can be mailed or opened offline.

Run with: python -c "from pathlib import Path; from models import report; \
report.write(Path('<warehouse>/models/<version>'), None)"
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

from core.files import atomic_write
from engine.events import ATTRIBUTION_DIR

# models.evaluation owns MODES, but importing it starts pyspark; the report stays JVM-free.
MODES = ("all", "new")
MODE_TITLES = {"all": "All purchases", "new": "New goods only"}
METRICS = (("precision", "Precision"), ("recall", "Recall"), ("map", "MAP"),
           ("ndcg", "NDCG"), ("coverage", "Coverage"))
COLOURS = {"all": "#3b6ea8", "new": "#e08a2c"}
DEFAULT_PUBLISHED = "als"  # what versions written before `published_model` existed served
DASH = "—"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}
tr.published td{background:#fff6d5;font-weight:600}
.note{color:#666}.pass{color:#1b7a1b;font-weight:600}.fail{color:#b01c1c;font-weight:600}
pre{background:#f6f6f6;padding:1em;overflow:auto}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value, spec: str = ".4f") -> str:
    number = _number(value)
    return DASH if number is None else format(number, spec)


def _count(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return DASH if value is None else _e(value)


def _models(evaluation: dict | None) -> dict:
    models = (evaluation or {}).get("models")
    return models if isinstance(models, dict) else {}


def _value(evaluation: dict | None, model: str, mode: str, metric: str) -> float | None:
    try:
        return _number(_models(evaluation)[model][mode][metric])
    except (KeyError, TypeError):
        return None


def _model_order(evaluation: dict | None, published: str) -> list[str]:
    names = list(_models(evaluation))
    return sorted(names, key=lambda name: name != published)  # stable: published first


def _published(metrics: dict) -> str:
    return str(metrics.get("published_model") or DEFAULT_PUBLISHED)


def _ratio(evaluation: dict, model: str, mode: str) -> str:
    mine = _value(evaluation, model, mode, "map")
    popular = _value(evaluation, "popularity", mode, "map")
    return DASH if mine is None or not popular else f"{mine / popular:.2f}×"


def _header(metrics: dict) -> str:
    window = metrics.get("window") or []
    span = " – ".join(_e(day) for day in window) if window else DASH
    counts = metrics.get("trained_on") or {}
    cells = "".join(f"<th>{_e(key.capitalize())}</th>" for key in counts)
    values = "".join(f"<td>{_count(value)}</td>" for value in counts.values())
    table = f"<table><tr>{cells}</tr><tr>{values}</tr></table>" if counts else \
        f'<p class="note">{DASH} no training counts recorded</p>'
    return (f"<h1>Model {_e(metrics.get('version', DASH))}</h1>"
            f"<p>Training window: {span}</p><h2>Trained on</h2>{table}")


def _evaluation_intro(evaluation: dict) -> str:
    return (f"<p>Holdout from {_e(evaluation.get('cut', DASH))}, "
            f"{_count(evaluation.get('test_users'))} test shoppers, "
            f"k = {_e(evaluation.get('k', '?'))}. The published model is highlighted; "
            "“× popularity” is MAP@k as a multiple of the popularity baseline's.</p>")


def _metric_table(evaluation: dict, published: str) -> str:
    k = _e(evaluation.get("k", "k"))
    top = "".join(f'<th colspan="{len(METRICS) + 1}">{_e(MODE_TITLES[mode])}</th>'
                  for mode in MODES)
    sub = "".join(f"<th>{label}@{k}</th>" for _, label in METRICS) + "<th>× popularity</th>"
    rows = []
    for name in _model_order(evaluation, published):
        mark = ' class="published"' if name == published else ""
        label = _e(name) + (" ★ published" if name == published else "")
        cells = "".join(
            "".join(f"<td>{_fmt(_value(evaluation, name, mode, key))}</td>"
                    for key, _ in METRICS) + f"<td>{_ratio(evaluation, name, mode)}</td>"
            for mode in MODES)
        rows.append(f'<tr{mark}><td class="name">{label}</td>{cells}</tr>')
    if not rows:
        rows.append(f'<tr><td class="name">{DASH}</td>'
                    + f"<td>{DASH}</td>" * (len(MODES) * (len(METRICS) + 1)) + "</tr>")
    return (f'<table><tr><th class="name" rowspan="2">Model</th>{top}</tr>'
            f"<tr>{sub * len(MODES)}</tr>{''.join(rows)}</table>")


def _change(before: float | None, after: float | None) -> tuple[str, str]:
    if before is None or after is None:
        return DASH, DASH
    delta = after - before
    return f"{delta:+.4f}", (f"{delta / before:+.1%}" if before else DASH)


def _comparison(metrics: dict, previous: dict | None) -> str:
    if previous is None:
        return '<p class="note">No previous version is being served.</p>'
    old_eval, old_model = previous.get("evaluation"), _published(previous)
    new_eval, new_model = metrics.get("evaluation"), _published(metrics)
    old_version = _e(previous.get("version", DASH))
    if old_model not in _models(old_eval):
        reason = (old_eval or {}).get("skipped", f"no figures for {old_model}")
        return (f'<p class="note">The served version {old_version} has no holdout evaluation '
                f"({_e(reason)}).</p>")
    if new_model not in _models(new_eval):
        return '<p class="note">This version has no evaluation to compare.</p>'
    rows = []
    for mode in MODES:
        for key, label in METRICS:
            before = _value(old_eval, old_model, mode, key)
            after = _value(new_eval, new_model, mode, key)
            delta, pct = _change(before, after)
            rows.append(f'<tr><td class="name">{_e(mode)}</td><td class="name">{label}</td>'
                        f"<td>{_fmt(before)}</td><td>{_fmt(after)}</td>"
                        f"<td>{delta}</td><td>{pct}</td></tr>")
    note = ""
    if old_eval.get("k") != new_eval.get("k"):
        note = (f'<p class="note">Caution: k differs ({_e(old_eval.get("k"))} before, '
                f"{_e(new_eval.get('k'))} now).</p>")
    return (f"<p>Served version {old_version} ({_e(old_model)}) against this version "
            f"({_e(new_model)}), on each version's own holdout.</p>{note}"
            '<table><tr><th class="name">Mode</th><th class="name">Metric</th>'
            f"<th>Previous</th><th>This version</th><th>Δ</th><th>% change</th></tr>"
            f"{''.join(rows)}</table>")


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= value)


def _chart(evaluation: dict, published: str) -> str:
    """Grouped bars: one group per model, one bar (rect.bar) per mode with a value."""
    names = _model_order(evaluation, published)
    values = {(n, m): _value(evaluation, n, m, "map") for n in names for m in MODES}
    top = _nice_ceiling(max((v for v in values.values() if v is not None), default=0.0))
    bar, gap, left, plot_h, pad = 36, 28, 56, 220, 20
    group_w = bar * len(MODES) + gap
    # wide enough for the legend even with a single model
    width, height = max(left + group_w * len(names) + pad, 380), plot_h + 80
    parts = []
    for i in range(5):
        tick, y = top * i / 4, pad + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#ddd"/><text x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end" font-size="11">{tick:.3g}</text>')
    for g, name in enumerate(names):
        x0 = left + gap / 2 + g * group_w
        for b, mode in enumerate(MODES):
            x, value = x0 + b * bar, values[(name, mode)]
            if value is None:
                parts.append(f'<text x="{x + bar / 2:.1f}" y="{pad + plot_h - 4}" '
                             f'text-anchor="middle" font-size="11">{DASH}</text>')
                continue
            h = plot_h * value / top
            parts.append(f'<rect class="bar" x="{x + 2:.1f}" y="{pad + plot_h - h:.1f}" '
                         f'width="{bar - 4}" height="{h:.1f}" fill="{COLOURS[mode]}">'
                         f"<title>{_e(name)} ({_e(mode)}): {value:.4f}</title></rect>")
        parts.append(f'<text x="{x0 + bar * len(MODES) / 2:.1f}" y="{pad + plot_h + 18}" '
                     f'text-anchor="middle" font-size="12">{_e(name)}</text>')
    legend = "".join(
        f'<circle cx="{left + 10 + i * 150}" cy="{height - 16}" r="6" fill="{COLOURS[m]}"/>'
        f'<text x="{left + 22 + i * 150}" y="{height - 12}" font-size="12">'
        f"{_e(MODE_TITLES[m])}</text>" for i, m in enumerate(MODES))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="MAP@k per model and mode">{"".join(parts)}{legend}</svg>')


def _evaluation(metrics: dict) -> str:
    evaluation = metrics.get("evaluation")
    if not _models(evaluation):
        reason = (evaluation or {}).get("skipped", "no evaluation recorded")
        return f'<h2>Holdout evaluation</h2><p class="note">Skipped: {_e(reason)}.</p>'
    published = _published(metrics)
    k = _e(evaluation.get("k", "k"))
    return (f"<h2>Holdout evaluation</h2>{_evaluation_intro(evaluation)}"
            f"{_metric_table(evaluation, published)}"
            f"<h2>MAP@{k} per model</h2>{_chart(evaluation, published)}")


def _selection(metrics: dict) -> str:
    """Which candidate the holdout chose (models/selection.py), and by how much."""
    chosen = (metrics.get("evaluation") or {}).get("selection")
    if not isinstance(chosen, dict):
        return ""
    rows = []
    for name, c in (chosen.get("candidates") or {}).items():
        mark = ' class="published"' if name == chosen.get("published") else ""
        by_rebuy = ", ".join(f"{r}: {_fmt(v)}" for r, v in (c.get("on_all_by_rebuy") or {}).items())
        versus = (_e(chosen.get("default", DASH)) if name == chosen.get("default") else
                  f'{_fmt(c.get("difference"), "+.4f")} ({_range(c.get("difference_interval"))})')
        rows.append(f'<tr{mark}><td class="name">{_e(name)}</td><td>{_fmt(c.get("score"))}</td>'
                    f'<td>{_range(c.get("interval"))}</td><td>{versus}</td>'
                    f'<td>{_fmt(c.get("rebuy"), "g")}</td><td class="name">{_e(by_rebuy)}</td>'
                    "</tr>")
    by = _e(chosen.get("by", DASH))
    default = _e(chosen.get("default", DASH))
    return (f"<h2>What is published, and why</h2><p>{_e(chosen.get('reason', DASH))}.</p>"
            "<p>Each candidate was trained before the holdout and measured on it; a "
            f"candidate replaces the configured {default} only when the 95% interval of its "
            "difference, shopper by shopper, lies above zero.</p>"
            f'<table><tr><th class="name">Candidate</th><th>{by}</th><th>95% interval</th>'
            f"<th>minus {default} (95% interval)</th><th>rebuy</th>"
            f'<th class="name">all purchases by rebuy</th></tr>{"".join(rows)}</table>')


def _range(pair) -> str:
    """An interval as "low..high"; a dash when there is none."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return DASH
    return f"{_fmt(pair[0], '.4f')}..{_fmt(pair[1], '.4f')}"


def _fpgrowth(metrics: dict) -> str:
    fp = metrics.get("fpgrowth") or {}
    return (f"<h2>FP-Growth</h2><p>Minimum support {_fmt(fp.get('min_support'), '.4g')}, "
            f"{_count(fp.get('rules'))} association rules.</p>")


def _gate(metrics: dict) -> str:
    gate = metrics.get("gate")
    if not isinstance(gate, dict):
        return ""
    if gate.get("passed"):
        return '<h2>Quality gate</h2><p class="pass">Passed.</p>'
    failures = "".join(f"<li>{_e(reason)}</li>" for reason in gate.get("failures") or [])
    return f'<h2>Quality gate</h2><p class="fail">Failed.</p><ul>{failures}</ul>'


def _interval(found: dict | None, spec: str = ".2%") -> str:
    if not found or found.get("value") is None:
        return DASH
    return (f"{format(found['value'], spec)} [{format(found['low'], spec)}, "
            f"{format(found['high'], spec)}]")


def _attribution(report: dict | None) -> str:
    """The night's attribution (experiments/attribution.py): per A/B arm, what sold."""
    if not report:
        return ""
    head = (f"<h2>Did the recommendations sell?</h2><p>{_count(report.get('impressions'))} "
            f"impressions from {_e(report.get('first_day'))} to {_e(report.get('date'))}; an "
            f"order counts within {_fmt(report.get('window_hours'), 'g')} hours of an "
            "impression that showed its goods to the same shopper.</p>")
    parts = [head]
    for exp in report.get("experiments") or []:
        rows = "".join(
            f'<tr><td class="name">{_e(a["arm"])}</td><td class="name">{_e(a["variant"])}</td>'
            f'<td>{_count(a["shoppers"])}</td><td>{_count(a["converted"])}</td>'
            f'<td>{_interval(a.get("conversion"))}</td>'
            f'<td>{_fmt(a.get("revenue_per_shopper"), ".3f")}</td></tr>' for a in exp["arms"])
        versus = "".join(
            f'<tr><td class="name">{_e(c["arm"])} − {_e(c["against"])}</td>'
            f'<td>{_interval(c["conversion_difference"], "+.2%")}</td>'
            f'<td>{_fmt(c["conversion_difference"].get("p_value"), ".3g")}</td>'
            f'<td>{_interval(c["revenue_per_shopper_difference"], "+.3f")}</td>'
            f'<td class="{"pass" if c["significant"] else "note"}">'
            f'{"significant" if c["significant"] else "not significant"}</td></tr>'
            for c in exp.get("comparisons") or [])
        parts.append(
            f"<h3>Experiment {_e(exp['name'])} (control: {_e(exp['control'])}, "
            f"{_fmt(exp.get('confidence'), '.1%')} intervals)</h3>"
            '<table><tr><th class="name">Arm</th><th class="name">Variant</th><th>Shoppers'
            "</th><th>Bought a recommended goods</th><th>Conversion</th><th>Revenue per "
            f"shopper</th></tr>{rows}</table>"
            '<table><tr><th class="name">Difference</th><th>Conversion</th><th>p</th>'
            f"<th>Revenue per shopper</th><th></th></tr>{versus}</table>")
    return "".join(parts)


def render(metrics: dict, previous: dict | None = None, attribution: dict | None = None) -> str:
    """The report page for one model's metrics.json, compared with the served `previous`,
    with the night's `attribution` report when there is one."""
    params = json.dumps(metrics.get("params") or {}, indent=2, sort_keys=True, default=str)
    body = (_header(metrics) + _evaluation(metrics) + _selection(metrics)
            + f"<h2>Against the served version</h2>{_comparison(metrics, previous)}"
            + _fpgrowth(metrics) + _gate(metrics) + _attribution(attribution)
            + f"<h2>Parameters</h2><pre>{_e(params)}</pre>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>shoprecs model {_e(metrics.get('version', DASH))}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def write(model_dir: Path, previous: dict | None = None, gate: dict | None = None) -> Path:
    """Render model_dir/metrics.json into model_dir/report.html (whole or not at all), with
    the night's attribution report when there is one and the quality gate's verdict
    (`gate`: passed, failures, skipped_by_operator) once it was given; its path."""
    model_dir = Path(model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    if gate is not None:
        metrics["gate"] = gate
    attribution = None
    window = metrics.get("window") or [None, None]
    found = model_dir.parent.parent / ATTRIBUTION_DIR / f"{window[-1]}.json"
    if window[-1] and found.exists():
        attribution = json.loads(found.read_text())
    return atomic_write(model_dir / "report.html", render(metrics, previous, attribution))
