"""Holds `sitecustomize.py` for the Python that GStreamer's plugin loader embeds (not imported as a package).

`srgan-fast gst-env` puts this folder first on PYTHONPATH; see sitecustomize.py for why and what it
does, and srgan_fast.gst for the whole set-up.
"""
