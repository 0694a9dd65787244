"""core/svg_charts.py: the drawn points are the given counts, in order and in height; texts are escaped."""

import xml.etree.ElementTree as ET

import pytest

from core.svg_charts import Series, line_chart, nice_ceiling, tick_indexes, x_positions

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def points(root: ET.Element, series: str) -> list[tuple[str, int, float, float]]:
    return [
        (c.get("data-label"), int(c.get("data-count")), float(c.get("cx")), float(c.get("cy")))
        for c in root.iterfind(".//svg:circle", NS)
        if c.get("data-series") == series
    ]


def test_points_equal_the_counts_and_their_heights_follow_them():
    labels = ["10:00", "10:01", "10:02", "10:03"]
    svg = line_chart(
        labels=labels,
        series=[Series("sent", "#00f", [3, 0, 10, 7]), Series("failed", "#f00", [0, 1, 0, 0])],
        width=400,
        height=200,
    )
    root = parse(svg)
    sent = points(root, "sent")
    # one point per non-zero count, in order, with its label
    assert [(label, n) for label, n, _, _ in sent] == [("10:00", 3), ("10:02", 10), ("10:03", 7)]
    assert [(label, n) for label, n, _, _ in points(root, "failed")] == [("10:01", 1)]
    # x grows with time; y (SVG's grows downwards) is linear in the count from the plot's bottom to 10 at its top
    xs = [x for *_, x, _ in sent]
    assert xs == sorted(xs)
    assert root.get("data-max") == "10"
    bottom, top = 200 - 36, 28
    for _, n, _, y in sent:
        assert y == pytest.approx(bottom - (bottom - top) * n / 10, abs=0.06)
    # the lines hold every bucket, zeros included
    line = next(p for p in root.iterfind(".//svg:polyline", NS) if p.get("data-series") == "sent")
    assert len(line.get("points").split()) == 4
    legend = {g.get("data-series"): int(g.get("data-total")) for g in root.iterfind(".//svg:g", NS)}
    assert legend == {"sent": 20, "failed": 1}


def test_texts_are_escaped():
    svg = line_chart(labels=["<b>&"], series=[Series('a"<x>', "#000", [1])], title="<script>alert(1)</script>")
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    assert root.find("svg:title", NS).text == "<script>alert(1)</script>"
    assert points(root, 'a"<x>')[0][:2] == ("<b>&", 1)


def test_nothing_to_draw_is_an_empty_frame_that_says_so():
    root = parse(line_chart(labels=[], series=[Series("sent", "#00f", [])]))
    assert not root.findall(".//svg:circle", NS)
    assert "Nothing to draw yet" in "".join(root.itertext())


def test_values_must_match_the_labels():
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        line_chart(labels=["a", "b", "c"], series=[Series("sent", "#00f", [1, 2])])


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (4999, 5000), (5001, 10000)]
)
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == expected


def test_ticks_are_few_spread_and_end_on_the_last_label():
    assert tick_indexes(5) == [0, 1, 2, 3, 4]
    for n in (9, 60, 180, 361):
        ticks = tick_indexes(n)
        assert ticks[0] == 0 and ticks[-1] == n - 1 and len(ticks) <= 8 and ticks == sorted(set(ticks))
    assert x_positions(1, left=0, right=10) == [5]
    assert x_positions(3, left=0, right=10) == [0, 5, 10]


@pytest.mark.parametrize(
    ("top", "labels"),
    [
        (1, ["0", "1"]),
        (5, ["0", "1", "2", "3", "4", "5"]),
        (10, ["0", "2", "4", "6", "8", "10"]),
        (20, ["0", "5", "10", "15", "20"]),
        (500, ["0", "100", "200", "300", "400", "500"]),
    ],
)
def test_the_y_axis_is_labelled_in_whole_counts(top, labels):
    root = parse(line_chart(labels=["a", "b"], series=[Series("sent", "#00f", [top, 0])]))
    texts = [t.text for t in root.iterfind("svg:text", NS) if t.get("text-anchor") == "end" and t.text.isdigit()]
    assert texts == labels
