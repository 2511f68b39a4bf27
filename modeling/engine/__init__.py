"""sceneclf ML engine: plain Python (no Django imports), testable on its own.

Part 1 (backbones and features): `packs`, `e5_container`, `backbones`, `features`, `cache`, `testing`.
"""
