"""Classify images page."""

from ui import common

common.page_header("Classify images")
common.coming_next("this page")
