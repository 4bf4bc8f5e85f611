"""Foundations used by every layer: input checks, progress bars, package paths, the version, safe downloads.

Nothing here knows about diffusion; every other subpackage may import from ``core``.  The modules
``core.download`` and ``core.progress`` are reached by their full names (their functions of the same
name are not re-exported here, so ``deqir_edu.core.download`` stays the module).
"""

from .checks import NotFiniteError, check_device, check_finite, check_image, is_integer
from .download import DownloadError, cache_dir, file_md5, file_sha256, sidecar_path, verify
from .paths import data_dir
from .version import package_version

__all__ = [
    "NotFiniteError",
    "is_integer",
    "check_device",
    "check_finite",
    "check_image",
    "DownloadError",
    "cache_dir",
    "file_md5",
    "file_sha256",
    "sidecar_path",
    "verify",
    "data_dir",
    "package_version",
]
