"""Applications: image files, images of any size by tiles, the demo, multi-device launch and the
``deqir-edu`` command line.  Nothing below ``apps`` imports it."""

from .images import load_image, save_image
from .tiling import TileSampling, restore_tiled, tile_starts

__all__ = ["load_image", "save_image", "restore_tiled", "tile_starts", "TileSampling"]
