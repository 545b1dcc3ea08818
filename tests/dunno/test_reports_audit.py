"""Known-answer checks of the numbers that tables and reports show: units, means, best markers,
csv / json agreement, rebuilt reports and runs side by side."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch

from dunno.reporting import Report, Section, read_report, render_report, write_report
from dunno.tables import Column, Table, metric_column, render_table, side_by_side
from uncertainty.ood.table import OODTable


def _ood_table() -> OODTable:
    rows = [
        {"detector": "msp", "ood_set": "a", "auroc": 0.90, "aupr_in": 0.80, "aupr_out": 0.70,
         "fpr95": 0.40, "detection_error": 0.20, "n_in": 10, "n_out": 10},
        {"detector": "msp", "ood_set": "b", "auroc": 0.70, "aupr_in": 0.60, "aupr_out": 0.50,
         "fpr95": 0.60, "detection_error": 0.30, "n_in": 10, "n_out": 10},
        {"detector": "energy", "ood_set": "a", "auroc": 0.80, "aupr_in": 0.90, "aupr_out": 0.60,
         "fpr95": 0.10, "detection_error": 0.25, "n_in": 10, "n_out": 10},
        {"detector": "energy", "ood_set": "b", "auroc": 0.95, "aupr_in": 0.85, "aupr_out": 0.90,
         "fpr95": 0.80, "detection_error": 0.05, "n_in": 10, "n_out": 10},
    ]
    return OODTable("in", ["a", "b"], ["msp", "energy"], rows, 0.99, "train", 10, 10,
                    {"shared_forward_total": 0.0, "total": 0.0}, [], {})


def test_numpy_and_torch_scalars_are_scaled_like_python_numbers():
    table = Table("t", [Column("method", "method"), metric_column("auroc"),
                        metric_column("nll")],
                  [{"method": "a", "auroc": np.float32(0.9125), "nll": np.float32(0.5)},
                   {"method": "b", "auroc": torch.tensor(0.25, dtype=torch.float64),
                    "nll": torch.tensor(1.25)}])
    text = render_table(table, "table")
    assert "91.25" in text and "25.00" in text and "0.5000" in text and "1.2500" in text
    assert "0.9125" not in text and "tensor" not in text
    rows = list(csv.DictReader(io.StringIO(render_table(table, "csv"))))
    assert float(rows[0]["AUROC (%)"]) == pytest.approx(91.25, abs=1e-4)
    assert float(rows[1]["AUROC (%)"]) == 25.0
    shown = json.loads(render_table(table, "json"))["rows"]
    assert shown[0]["auroc"] == pytest.approx(91.25, abs=1e-4) and shown[1]["auroc"] == 25.0
    assert render_table(table, "md").splitlines()[1] == "|---|---:|---:|"  # numbers align right


def test_a_repeated_header_is_refused_not_written_under_the_wrong_column():
    with pytest.raises(ValueError, match=r"repeat a header.*NLL \(nats\)"):
        Table("t", [Column("data", "data"), metric_column("nll"), metric_column("nll_nats")],
              [{"data": "x", "nll": 1.0, "nll_nats": 2.0}])
    with pytest.raises(ValueError, match="repeat a header.*'RMSE se'"):
        Table("t", [Column("rmse", "RMSE", se="rmse_se"), Column("other", "RMSE se")], [])
    # the same header in two groups is two columns
    table = Table("t", [metric_column("nll", group="a"), metric_column("nll_nats", group="b")],
                  [{"nll": 1.0, "nll_nats": 2.0}])
    assert render_table(table, "csv") == "a: NLL (nats),b: NLL (nats)\n1.0,2.0\n"


def test_ood_means_best_and_pivot_known_answers():
    table = _ood_table()
    means = table.mean_by_detector()
    assert means["msp"]["auroc"] == pytest.approx(0.80)
    assert means["energy"]["fpr95"] == pytest.approx(0.45)
    assert table.best("auroc") == {"a": "msp", "b": "energy"}        # higher is better
    assert table.best("fpr95") == {"a": "energy", "b": "msp"}        # lower is better
    assert table.best("detection_error") == {"a": "msp", "b": "energy"}
    long, pivot = table.report_tables()
    text = render_table(long, "table").splitlines()
    mean_rows = [line.split() for line in text if " mean " in f" {line} "]
    assert mean_rows[0][:7] == ["msp", "mean", "80.00", "70.00", "60.00", "50.00", "25.00"]
    assert mean_rows[1][:7] == ["energy", "mean", "87.50", "87.50", "75.00", "45.00", "15.00"]
    md = render_table(pivot, "md").splitlines()
    assert md[2] == "| msp | 90.00 | 70.00 | 80.00 |"
    assert md[3] == "| energy | 80.00 | 95.00 | 87.50 |"


def test_csv_parses_back_to_the_json_values():
    long = _ood_table().report_tables()[0]
    long.rows.append({"detector": "knn", "ood_set": "a", "auroc": float("nan"),
                      "aupr_in": float("inf"), "aupr_out": None, "fpr95": 0.99996,
                      "detection_error": 0.123456789})
    shown = json.loads(render_table(long, "json"))["rows"]
    parsed = list(csv.DictReader(io.StringIO(render_table(long, "csv"))))
    assert len(parsed) == len(shown) == 7
    for c in long.columns:
        for got, want in zip((r[c.label] for r in parsed), (r[c.key] for r in shown),
                             strict=True):
            if isinstance(want, float | int):
                assert float(got) == want
            elif want is None:
                assert got == ""
            else:
                assert got == want
    assert parsed[-1]["AUROC (%)"] == "nan" and shown[-1]["auroc"] == "nan"
    assert parsed[-1]["FPR@95 (%)"] == "99.996"
    assert float(parsed[-1]["detection error (%)"]) == pytest.approx(12.3456789)


def test_a_rebuilt_report_shows_the_same_numbers(tmp_path):
    long, pivot = _ood_table().report_tables()
    report = Report("ood", "ood", [Section("OOD", [long, pivot])], primary="ood")
    write_report(report, tmp_path / "run")
    rebuilt = read_report(tmp_path / "run")
    for fmt in ("table", "md", "csv", "json"):
        assert render_report(rebuilt, fmt) == render_report(report, fmt)
    write_report(rebuilt, tmp_path / "again")
    for name in ("report.md", "report.json", "report.html"):
        assert (tmp_path / "again" / name).read_text() == (tmp_path / "run" / name).read_text()
    assert "| msp | a | 90.00 | 80.00 | 70.00 | 40.00 | 20.00 |" in \
        (tmp_path / "run" / "report.md").read_text()


def test_side_by_side_matches_rows_by_key_not_position():
    a = Table("ood", [Column("detector", "detector"), metric_column("auroc")],
              [{"detector": "msp", "auroc": 0.9}, {"detector": "energy", "auroc": 0.8}],
              index=("detector",))
    b = Table("ood", [Column("detector", "detector"), metric_column("auroc")],
              [{"detector": "energy", "auroc": 0.7}, {"detector": "knn", "auroc": 0.6}],
              index=("detector",))
    rows = list(csv.DictReader(io.StringIO(render_table(side_by_side([a, b], ["A", "B"]),
                                                        "csv"))))
    got = {r["detector"]: (r["A: AUROC (%)"], r["B: AUROC (%)"]) for r in rows}
    assert got == {"msp": ("90.0", ""), "energy": ("80.0", "70.0"), "knn": ("", "60.0")}
    # the rows one run lacks are named in a note of the merged table
    (note,) = side_by_side([a, b], ["A", "B"]).notes
    assert "msp not in B; knn not in A" in note and "mean" in note
    assert side_by_side([a, a], ["A", "B"]).notes == []  # the same rows: no note
