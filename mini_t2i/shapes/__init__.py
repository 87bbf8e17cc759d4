"""Shapes World, the project's compositional benchmark: ``spec`` (constants),
``render`` (rasteriser), ``scenes`` (scenes, captions, splits), ``checker``
(deterministic scoring) and ``files`` (image folders). Import the submodules
directly; nothing is imported here.
"""
