"""Foundations used by every layer: input checks, progress bars, package paths, safe downloads.

Nothing here knows about diffusion; every other subpackage may import from ``core``.
"""
from .checks import check_finite, check_image
from .download import DownloadError, cache_dir, download, file_sha256, sidecar_path, verify
from .paths import data_dir
from .progress import progress
from .version import package_version

__all__ = ["check_finite", "check_image", "DownloadError", "cache_dir", "download", "file_sha256",
           "sidecar_path", "verify", "data_dir", "progress", "package_version"]
