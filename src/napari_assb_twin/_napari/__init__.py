"""napari integration: reader, writer, sample data and (later) widgets.

The only package of napari-assb-twin that imports napari or Qt. Modules here import torch lazily,
inside the functions that need it, so opening a file in napari never pays for it.
"""
