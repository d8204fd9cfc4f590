import copy
import html
import json
from html.parser import HTMLParser

from models import report

VOID = {"meta", "br", "hr", "img", "input", "link"}


def scores(precision, recall, map_, ndcg, users, coverage):
    return {"precision": precision, "recall": recall, "map": map_, "ndcg": ndcg,
            "users": users, "coverage": coverage}


def metrics(version="20240130-abc"):
    models = {
        "hybrid": {"all": scores(0.1234, 0.2345, 0.1523, 0.2011, 812, 0.3125),
                   "new": scores(0.0456, 0.0789, 0.0600, 0.0912, 790, 0.4100)},
        "als": {"all": scores(0.1000, 0.2000, 0.1200, 0.1800, 812, 0.2500),
                "new": scores(0.0400, 0.0700, 0.0450, 0.0800, 790, 0.3900)},
        "popularity": {"all": scores(0.0600, 0.1100, 0.0500, 0.0900, 812, 0.0120),
                       "new": scores(0.0100, 0.0200, 0.0200, 0.0250, 790, 0.0150)},
        "cooccurrence": {"all": scores(0.0800, 0.1500, 0.1000, 0.1400, 812, 0.2000),
                         "new": scores(0.0300, 0.0500, 0.0300, 0.0500, 790, 0.2200)},
    }
    return {"version": version, "window": ["2023-11-01", "2024-01-30"],
            "trained_on": {"orders": 12345, "lines": 67890, "shoppers": 2345, "goods": 678},
            "params": {"als": {"rank": 32, "reg": 0.05}, "hybrid": {"w_als": 1.0}},
            "published_model": "hybrid",
            "evaluation": {"k": 10, "cut": "2024-01-24", "test_users": 812, "models": models},
            "fpgrowth": {"min_support": 0.001, "rules": 1234}}


class Tree(HTMLParser):
    """Records elements with their attributes and the text of each table row; checks nesting."""

    def __init__(self):
        super().__init__()
        self.stack, self.elements, self.rows, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append({"attrs": dict(attrs), "cells": []})
        if tag in ("td", "th"):
            self.rows[-1]["cells"].append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th") and self.rows:
            self.rows[-1]["cells"][-1] += data


def parse(page):
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.errors == [] and tree.stack == [], (tree.errors, tree.stack)
    return tree


def row(tree, first_cell):
    return next(r for r in tree.rows if r["cells"] and r["cells"][0].startswith(first_cell))


def test_metric_table_marks_the_published_model_and_compares_with_popularity():
    page = report.render(metrics())
    tree = parse(page)
    assert "Model 20240130-abc" in page and "2023-11-01 – 2024-01-30" in page
    assert "12,345" in page and "1,234 association rules" in page and "0.001" in page
    hybrid = row(tree, "hybrid")
    assert hybrid["attrs"].get("class") == "published"
    assert "published" in hybrid["cells"][0]
    # all: precision recall map ndcg coverage ×pop, then the same for new
    assert hybrid["cells"][1:] == ["0.1234", "0.2345", "0.1523", "0.2011", "0.3125", "3.05×",
                                   "0.0456", "0.0789", "0.0600", "0.0912", "0.4100", "3.00×"]
    assert row(tree, "als")["attrs"].get("class") is None
    assert row(tree, "als")["cells"][6] == "2.40×" and row(tree, "als")["cells"][12] == "2.25×"
    assert row(tree, "popularity")["cells"][6] == "1.00×"
    model_rows = [r["cells"][0] for r in tree.rows if len(r["cells"]) == 13]
    assert model_rows == ["hybrid ★ published", "als", "popularity", "cooccurrence"]
    assert "No previous version is being served." in page
    assert '"rank": 32' in html.unescape(page)


def test_chart_has_one_bar_per_model_and_mode():
    tree = parse(report.render(metrics()))
    assert sum(tag == "svg" for tag, _ in tree.elements) == 1
    bars = [attrs for tag, attrs in tree.elements if tag == "rect"]
    assert len(bars) == 4 * 2
    heights = sorted(float(b["height"]) for b in bars)
    # the tallest bar is hybrid's 0.1523 on an axis topped at 0.2 (220 px tall)
    assert heights[-1] == round(220 * 0.1523 / 0.2, 1)


def test_comparison_with_the_previous_version():
    before = metrics("20240129-old")
    before["evaluation"]["models"]["hybrid"]["all"]["map"] = 0.1250
    tree = parse(report.render(metrics(), before))
    served_map = next(r for r in tree.rows if r["cells"][:2] == ["all", "MAP"])
    assert served_map["cells"][2:] == ["0.1250", "0.1523", "+0.0273", "+21.8%"]
    unchanged = next(r for r in tree.rows if r["cells"][:2] == ["new", "NDCG"])
    assert unchanged["cells"][2:] == ["0.0912", "0.0912", "+0.0000", "+0.0%"]

    before["evaluation"] = {"skipped": "first night"}
    page = report.render(metrics(), before)
    assert "20240129-old has no holdout evaluation (first night)" in page


def test_skipped_evaluation_says_why():
    m = metrics()
    m["evaluation"] = {"skipped": "no shoppers bought both before and after 2024-01-24"}
    m["gate"] = {"passed": True, "failures": []}
    page = report.render(m, metrics("older"))
    tree = parse(page)
    assert "Skipped: no shoppers bought both before and after 2024-01-24." in page
    assert "This version has no evaluation to compare." in page
    assert "Passed." in page
    assert not any(tag in ("svg", "rect") for tag, _ in tree.elements)


def test_missing_models_and_modes_show_a_dash():
    m = metrics()
    del m["evaluation"]["models"]["popularity"]
    del m["evaluation"]["models"]["als"]["new"]
    m["evaluation"]["models"]["cooccurrence"]["all"]["recall"] = None
    del m["trained_on"]
    tree = parse(report.render(m))
    assert row(tree, "hybrid")["cells"][6] == "—"  # no popularity to divide by
    assert row(tree, "als")["cells"][7:] == ["—"] * 6
    assert row(tree, "cooccurrence")["cells"][2] == "—"
    assert len([1 for tag, _ in tree.elements if tag == "rect"]) == 3 * 2 - 1


def test_strings_from_the_data_are_escaped():
    m = metrics('<script>alert("x")</script>&')
    m["evaluation"]["models"]["<b>odd</b>"] = m["evaluation"]["models"].pop("cooccurrence")
    m["params"]["note"] = "</pre><i>"
    m["gate"] = {"passed": False, "failures": ["MAP <too> low & sad"]}
    page = report.render(m, {"version": "<old>", "evaluation": {"skipped": "<none>"}})
    parse(page)
    assert "<script>" not in page and "<b>odd" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "&lt;/pre&gt;&lt;i&gt;" in page
    assert "Failed." in page and "MAP &lt;too&gt; low &amp; sad" in page
    assert "&lt;old&gt; has no holdout evaluation (&lt;none&gt;)" in page


def test_write_creates_the_report_atomically(tmp_path):
    m = metrics()
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    previous = copy.deepcopy(m)
    previous["version"] = "20240129-old"
    path = report.write(tmp_path, previous)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page == report.render(m, previous) and "20240129-old" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "report.html"]


def test_every_candidate_shows_its_figure_interval_and_difference_and_why_one_won():
    import numpy as np

    from models import hybrid, selection

    rng = np.random.default_rng(2)
    base = rng.normal(0.10, 0.02, 400)
    per = {"hybrid": base, "als": base + 0.05, "item_knn": base - 0.01,
           "recent_popularity": base - 0.02, "latest_popularity": base - 0.03}
    result, values = {}, {}
    for name in selection.CANDIDATES:
        for rebuy in selection.REBUY_GRID:
            key = selection.variant(name, rebuy)
            result[key] = {"all": {"map": float(per[name].mean())},
                           "new": {"map": float(per[name].mean())}}
            values[key] = per[name]
    _, chosen = selection.choose(result, values, hybrid.HybridParams())
    m = metrics()
    m["evaluation"]["selection"] = chosen
    tree = parse(report.render(m, None))
    header = next(i for i, r in enumerate(tree.rows) if r["cells"][:1] == ["Candidate"])
    assert tree.rows[header]["cells"][2:4] == ["95% interval", "minus hybrid (95% interval)"]
    table = {r["cells"][0]: r for r in tree.rows[header + 1:header + 1 + len(per)]}
    assert set(table) == set(per)
    for name, r in table.items():
        low, high = (float(x) for x in r["cells"][2].split(".."))
        assert low < per[name].mean() < high, (name, r["cells"])
    assert table["als"]["attrs"].get("class") == "published"
    assert table["als"]["cells"][3] == "+0.0500 (0.0500..0.0500)"  # paired: noise cancels
    assert table["item_knn"]["cells"][3].startswith("-0.0100")
    assert table["hybrid"]["cells"][3] == "hybrid"
    assert "als beats the configured hybrid" in report.render(m, None)
