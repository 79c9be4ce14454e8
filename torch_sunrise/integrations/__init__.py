"""Integrations of the sunrise device with third-party libraries.

* :mod:`torch_sunrise.integrations.huggingface`: makes ``accelerate`` and
  ``transformers`` pick the sunrise device the way they pick CUDA (see
  ``docs/huggingface.md``). Importing this package imports nothing from those
  libraries.
"""
