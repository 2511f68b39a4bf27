"""Backbones: weight packs, containers, the lean forward, feature extraction and its cache."""
