"""Custom Keras layers used by transfer models (registered for safe_mode loading)."""
