"""Runs page."""

from ui import common

common.page_header("Runs")
common.coming_next("this page")
