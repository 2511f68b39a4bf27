"""sceneclf ML engine: plain Python (no Django imports), testable on its own.

- ``backbones``: weight packs, containers, the lean forward, feature extraction, the feature cache.
- ``routes``: the route interface (``base``), the registry, and one module per route (``probe``, ``tfidf``, ...).
- ``versions``: train any route, calibrate, save the version folder, ``Predictor.load(...).predict(texts)``.
- ``evaluation``: calibration, out-of-scope scores, metrics, plots, scoring a route on dataset files.
- ``selection``: active learning and label quality.
- ``data``: what training learns from (label definitions, noisy labels, augmentation).
"""
