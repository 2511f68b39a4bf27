"""Server-rendered pages of the labeling app (one module per area)."""
