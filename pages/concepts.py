"""CNN concepts page."""

from ui import common

common.page_header("CNN concepts")
common.coming_next("this page")
