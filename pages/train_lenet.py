"""Train LeNet-5 page."""

from ui import common

common.page_header("Train LeNet-5")
common.coming_next("this page")
