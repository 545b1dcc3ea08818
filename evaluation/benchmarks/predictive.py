"""The files of ``dunno uci --out`` (the UCI regression benchmark of the predictive-uncertainty
regressors): ``uci_<method>.csv``, ``.json`` (per-split values too),
``.md`` and the report (:func:`uci_report`: ``report.md``, ``report.html``,
``report.json``). The benchmark itself is :func:`uncertainty.predictive.run_uci`."""

from __future__ import annotations

from pathlib import Path

from dunno.checkpoints import atomic_write_text
from dunno.reporting import Report, Section, write_csv, write_json, write_report
from uncertainty.predictive.uci import UCITable

__all__ = ["uci_report", "write_uci_report"]


def uci_report(table: UCITable) -> Report:
    """The report of ``table``: RMSE and test LL (mean ± standard error) per dataset next to
    the published numbers, and the verdicts."""
    return Report("uci", f"dunno uci: {table.method}", [Section("UCI regression", [
        f"`{table.method}` on the fixed UCI splits; RMSE and test log-likelihood per point in "
        "original units, mean ± standard error over the splits.",
        table.report_table(), table.verdicts()])], {"method": table.method},
        primary=f"uci_{table.method}")


def write_uci_report(table: UCITable, out: str | Path) -> list[Path]:
    """Write ``table``'s files (see the module docstring) to the directory ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = [write_csv(table.rows, folder / f"uci_{table.method}.csv", table.columns),
             write_json(table.as_dict(), folder / f"uci_{table.method}.json"),
             atomic_write_text(table.to_markdown(), folder / f"uci_{table.method}.md")]
    return files + write_report(uci_report(table), folder)
