"""Reports: report.json (schema in docs/report_schema.md), report.md, pareto.png."""

from fewops.report.write import build_report, markdown_table, write_report

__all__ = ["build_report", "markdown_table", "write_report"]
