"""The run report: ``build_report(run)`` draws ``report/index.html`` and its figures from a
run folder's stored results; it reads and draws, and never solves anything.

``page`` builds the page; ``models`` and ``study`` hold its sections; ``variants`` reads
measure variants and layer names from stored rows; ``html`` the page's building blocks.
"""
from __future__ import annotations

from layergw.report.models import groups_summary, outlier_groups
from layergw.report.page import build_report

__all__ = ["build_report", "groups_summary", "outlier_groups"]
