"""Custom Keras layers used by the LeNet family (registered for safe_mode loading)."""
