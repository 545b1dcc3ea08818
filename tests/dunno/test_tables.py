"""dunno.tables: units, decimals, the text / md / csv / json / html renderings, side by side."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from dunno.tables import Column, Table, metric_column, render_table, side_by_side


def _ood_table(scale_auroc=(0.91234, 0.5)) -> Table:
    rows = [{"detector": "msp", "auroc": scale_auroc[0], "nll": 0.123456, "n": 7},
            {"detector": "energy", "auroc": scale_auroc[1], "nll": float("nan"), "n": 12}]
    return Table("t", [Column("detector", "detector"), metric_column("auroc"),
                       metric_column("nll"), Column("n", "n")], rows, index=("detector",),
                 title="Example", notes=["a note"])


def test_metric_columns_have_one_unit_each():
    for key in ("auroc", "aupr_in", "aupr_out", "fpr95", "ece", "adaptive_ece", "mce",
                "accuracy", "detection_error"):
        column = metric_column(key)
        assert column.unit == "%" and column.scale == 100.0 and column.digits == 2
        assert column.label.endswith("(%)")
    assert metric_column("nll").label == "NLL (nats)" and metric_column("nll").scale == 1.0
    assert metric_column("brier").label == "Brier"
    with pytest.raises(ValueError, match="'key' argument of metric_column"):
        metric_column("auc")


def test_text_table_aligns_and_scales():
    text = render_table(_ood_table(), "table").splitlines()
    assert text[0].split() == ["detector", "AUROC", "(%)", "NLL", "(nats)", "n"]
    assert text[2].split() == ["msp", "91.23", "0.1235", "7"]
    assert text[3].split() == ["energy", "50.00", "nan", "12"]
    assert len({len(line) for line in text[:2]}) == 1  # header and rule line up
    assert text[2].index("91.23") + 5 == text[3].index("50.00") + 5  # numbers right-aligned


def test_markdown_table():
    md = render_table(_ood_table(), "md").splitlines()
    assert md[0] == "| detector | AUROC (%) | NLL (nats) | n |"
    assert md[1] == "|---|---:|---:|---:|"
    assert md[2] == "| msp | 91.23 | 0.1235 | 7 |"
    table = Table("x", [Column("a", "a|b")], [{"a": "p|q"}])
    assert render_table(table, "md").splitlines()[2] == "| p\\|q |"  # pipes escaped


def test_csv_round_trips_through_the_csv_module():
    table = _ood_table()
    rows = list(csv.DictReader(io.StringIO(render_table(table, "csv"))))
    assert list(rows[0]) == ["detector", "AUROC (%)", "NLL (nats)", "n"]
    assert rows[0]["detector"] == "msp"
    assert rows[0]["AUROC (%)"] == "91.234"  # in percent, 12 significant digits (no 0.1+0.2)
    assert float(rows[0]["AUROC (%)"]) == pytest.approx(100 * 0.91234, rel=1e-12)
    assert float(rows[0]["NLL (nats)"]) == 0.123456 and int(rows[1]["n"]) == 12
    assert math.isnan(float(rows[1]["NLL (nats)"]))
    quoted = Table("q", [Column("s", "set")], [{"s": 'a,b "c"'}])
    assert list(csv.reader(io.StringIO(render_table(quoted, "csv")))) == [["set"],
                                                                          ['a,b "c"']]


def test_json_parses_and_reads_back():
    table = _ood_table()
    data = json.loads(render_table(table, "json"))
    assert data["rows"][0] == {"detector": "msp", "auroc": 91.234, "nll": 0.123456, "n": 7}
    assert data["rows"][1]["nll"] == "nan"  # JSON has no NaN
    assert data["columns"][1] == {"key": "auroc", "header": "AUROC", "unit": "%",
                                  "digits": 2, "se": None, "group": None}
    back = Table.from_dict(data)
    for fmt in ("table", "md", "csv", "html"):  # the record shows the same table
        assert render_table(back, fmt) == render_table(table, fmt)
    with pytest.raises(ValueError, match="Not a table record"):
        Table.from_dict({"name": "x"})


def test_standard_errors_show_as_plus_minus_and_split_in_csv():
    table = Table("u", [Column("d", "dataset"), Column("r", "RMSE", digits=3, se="r_se")],
                  [{"d": "Yacht", "r": 0.98765, "r_se": 0.0123}])
    assert "| Yacht | 0.988 ± 0.012 |" in render_table(table, "md")
    rows = list(csv.DictReader(io.StringIO(render_table(table, "csv"))))
    assert rows == [{"dataset": "Yacht", "RMSE": "0.98765", "RMSE se": "0.0123"}]


def test_html_table_escapes_and_groups():
    table = Table("h", [Column("k", "key"), Column("v", "<v>", "%", 1, 100.0, group="run")],
                  [{"k": "a&b", "v": 0.5}])
    out = render_table(table, "html")
    assert "a&amp;b" in out and "&lt;v&gt; (%)" in out and ">50.0<" in out
    assert '<th colspan="1" class="group">run</th>' in out


def test_side_by_side_groups_columns_by_run_and_matches_rows():
    a = _ood_table((0.9, 0.6))
    b = Table("t", a.columns, [{"detector": "energy", "auroc": 0.7, "nll": 1.0, "n": 3},
                               {"detector": "knn", "auroc": 0.8, "nll": 2.0, "n": 4}],
              index=("detector",))
    merged = side_by_side([a, b], ["run-a", "run-b"])
    assert [c.full_label for c in merged.columns] == [
        "detector", "run-a: AUROC (%)", "run-a: NLL (nats)", "run-a: n", "run-b: AUROC (%)",
        "run-b: NLL (nats)", "run-b: n"]
    assert [r["detector"] for r in merged.rows] == ["msp", "energy", "knn"]
    assert merged.rows[1]["run-a/auroc"] == 0.6 and merged.rows[1]["run-b/auroc"] == 0.7
    assert merged.rows[2]["run-a/auroc"] is None  # knn did not run in run-a
    md = render_table(merged, "md").splitlines()
    assert md[3] == "| energy | 60.00 | nan | 12 | 70.00 | 1.0000 | 3 |"
    assert md[4] == "| knn |  |  |  | 80.00 | 2.0000 | 4 |"
    text = render_table(merged, "table").splitlines()
    assert text[0].split() == ["run-a", "run-b"] and text[0].index("run-a") > len("detector")
    with pytest.raises(ValueError, match="must differ"):
        side_by_side([a, b], ["x", "x"])
    with pytest.raises(ValueError, match="indexed by"):
        side_by_side([a, Table("t", a.columns, [], index=())], ["x", "y"])


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="repeat a key"):
        Table("x", [Column("a", "a"), Column("a", "b")], [])
    with pytest.raises(ValueError, match="index"):
        Table("x", [Column("a", "a")], [], index=("b",))
    with pytest.raises(ValueError, match="'fmt' argument of render_table"):
        render_table(_ood_table(), "xlsx")
    assert render_table(Table("x", [Column("a", "a")], []), "table") == "(no rows)"
