"""Training: one resolved config fitted into one run folder."""
