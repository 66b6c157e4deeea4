"""Geometry for the non-image modalities: OBJ meshes, 2D shapes, points on the sphere."""
