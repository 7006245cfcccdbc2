"""Data preparation for PAM: converters from public region datasets to the region schema, VLM
refinement with Set-of-Mark overlays, filters and augmentation, streaming-caption data, manifests.

Run ``python -m data_pipeline --help``. This package drives ``pam`` (its schema, video decoding and
chat clients); ``pam`` never imports it.
"""
