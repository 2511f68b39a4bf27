"""Calibration, abstention, the out-of-scope score, metrics and plots: route-agnostic, on logits."""
