"""Model builders. Importing this package registers every custom layer for safe_mode loading."""

from core.models import layers, transfer_layers  # noqa: F401 - registration side effect is the point
