"""CNN concepts: output sizes, layer stacks, receptive fields, a convolution playground and
pooling against strided convolution.

Thin page: it lays out the tabs; every section lives in ``ui/concepts.py``.
"""

import streamlit as st

from ui import common
from ui import concepts as concepts_ui

common.init_session_state(concepts_ui.DEFAULTS)
common.page_header(
    "CNN concepts",
    "The study's *CNN basics* slides to play with: how depth, stride, zero-padding, dilation and "
    "pooling change sizes, parameters and receptive fields, and what a kernel does to a picture.",
)
size_tab, stack_tab, field_tab, playground_tab, strided_tab = st.tabs(
    ["Output size", "Layer stack", "Receptive field", "Convolution playground",
     "Strided conv instead of pooling"]
)
with size_tab:
    concepts_ui.output_size_section()
with stack_tab:
    _, stack_analysis, stack_input_shape = concepts_ui.layer_stack_section()
with field_tab:
    concepts_ui.receptive_field_section(stack_analysis, stack_input_shape)
with playground_tab:
    concepts_ui.playground_section()
with strided_tab:
    concepts_ui.strided_section()
