"""Compare runs page."""

from ui import common

common.page_header("Compare runs")
common.coming_next("this page")
