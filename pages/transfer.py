"""Transfer learning page."""

from ui import common

common.page_header("Transfer learning")
common.coming_next("this page")
