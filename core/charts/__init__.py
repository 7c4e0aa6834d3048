"""Plotly figure builders, one module per area; every builder returns a ``go.Figure``."""
