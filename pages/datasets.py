"""Datasets page."""

from ui import common

common.page_header("Datasets")
common.coming_next("this page")
