"""Image data: Fashion-MNIST and photo readers, patch samplers for training, the frozen test sets."""

from .fashion import FASHION_MNIST_DIR, fashion_mnist, fashion_subset, read_idx
from .fashion_download import download_fashion_mnist
from .photos import PHOTO_LICENCES, PHOTO_TEST, PHOTO_TRAIN, image_folder, skimage_photos
from .samplers import PatchSampler, TensorSampler, make_sampler
from .testsets import load_testset
from .transforms import fit_to, pad_to_32, shrink, to_tensor_images

__all__ = [
    "FASHION_MNIST_DIR",
    "PHOTO_LICENCES",
    "PHOTO_TEST",
    "PHOTO_TRAIN",
    "PatchSampler",
    "TensorSampler",
    "download_fashion_mnist",
    "fashion_mnist",
    "fashion_subset",
    "fit_to",
    "image_folder",
    "load_testset",
    "make_sampler",
    "pad_to_32",
    "read_idx",
    "shrink",
    "skimage_photos",
    "to_tensor_images",
]
