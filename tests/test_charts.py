import pytest

from credit_app.web import charts


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (12, 20), (23, 25), (180, 200), (4_300, 5_000)],
)
def test_nice_ceiling(value, top):
    assert charts.nice_ceiling(value) == pytest.approx(top)


def test_column_chart_stacks_series_to_scale():
    chart = charts.column_chart(
        "c",
        "Title",
        "Description",
        ["a", "b"],
        [charts.Series("ok", [4, 0]), charts.Series("failed", [1, 2])],
    )
    assert [(rect.tone, rect.tooltip) for rect in chart.rects] == [
        ("accent", "a: 4 ok"),
        ("info", "a: 1 failed"),
        ("info", "b: 2 failed"),
    ]
    plot = charts.HEIGHT - charts.PAD_TOP - charts.PAD_BOTTOM
    ok, failed, _ = chart.rects
    assert ok.height == pytest.approx(plot * 4 / 8)
    assert failed.y + failed.height == pytest.approx(ok.y)
    assert [label.text for label in chart.y_labels] == ["0", "2", "4", "6", "8"]
    assert chart.legend == [("accent", "ok"), ("info", "failed")]


@pytest.mark.parametrize("peak", [1, 2, 3, 5, 9, 13, 38, 101])
def test_count_axes_have_whole_steps_only(peak):
    for chart in (
        charts.column_chart("c", "T", "D", ["a"], [charts.Series("users", [peak])]),
        charts.line_chart("l", "T", "D", ["a"], [charts.Series("users", [peak])]),
    ):
        labels = [label.text.replace(",", "") for label in chart.y_labels]
        assert all(text.isdigit() for text in labels), labels
        assert int(labels[-1]) >= peak


def test_fractional_values_keep_a_fine_axis():
    chart = charts.line_chart("l", "T", "D", ["a"], [charts.Series("ratio", [0.3])])
    assert chart.y_labels[-1].text == "0.5"


def test_a_series_can_choose_its_tone():
    chart = charts.column_chart("c", "T", "D", ["a"], [charts.Series("failed", [1], "danger")])
    assert chart.rects[0].tone == "danger" and chart.legend == [("danger", "failed")]


def test_line_chart_in_percent_and_with_gaps():
    chart = charts.line_chart(
        "l", "T", "D", ["a", "b", "c"], [charts.Series("rate", [0.5, None, 0.25])], percent=True
    )
    points = [tuple(map(float, pair.split(","))) for pair in chart.lines[0].points.split()]
    bottom = charts.HEIGHT - charts.PAD_BOTTOM
    assert points[1][1] == pytest.approx(bottom)
    assert chart.y_labels[-1].text == "100%"


def test_bar_chart_labels_every_item():
    chart = charts.bar_chart("b", "T", "D", [("Interior", 30), ("Video", 0)])
    assert [label.text for label in chart.x_labels] == ["Interior", "30", "Video", "0"]
    assert chart.rects[1].width == 0


def test_many_days_get_thinned_labels():
    labels = [f"d{n}" for n in range(90)]
    chart = charts.column_chart("c", "T", "D", labels, [charts.Series("s", [1] * 90)])
    assert len(chart.x_labels) <= 8
