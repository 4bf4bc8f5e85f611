"""Image data: Fashion-MNIST and photo readers, patch samplers for training, the frozen test sets."""
from .readers import (
                      FASHION_MNIST_DIR,
                      PHOTO_LICENCES,
                      PHOTO_TEST,
                      PHOTO_TRAIN,
                      PatchSampler,
                      TensorSampler,
                      download_fashion_mnist,
                      fashion_mnist,
                      fashion_subset,
                      fit_to,
                      image_folder,
                      load_testset,
                      make_sampler,
                      pad_to_32,
                      read_idx,
                      shrink,
                      skimage_photos,
                      to_tensor_images,
)

__all__ = ["FASHION_MNIST_DIR", "PHOTO_LICENCES", "PHOTO_TEST", "PHOTO_TRAIN", "PatchSampler", "TensorSampler",
           "download_fashion_mnist", "fashion_mnist", "fashion_subset", "fit_to", "image_folder", "load_testset", "make_sampler",
           "pad_to_32", "read_idx", "shrink", "skimage_photos", "to_tensor_images"]
