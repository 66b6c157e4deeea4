"""Kinds of signals (:mod:`.base`): images (:mod:`.image`) and grids of other modalities (:mod:`.grids`:
voxels, 3D and 2D signed distances, the sphere). Importing the package registers every one in
:data:`metasparse.modalities.base.MODALITIES`.
"""

from metasparse.modalities import grids, image
from metasparse.modalities.base import MODALITIES

__all__ = ["MODALITIES", "grids", "image"]
