"""A device-resident data path: the dataset lives on the GPU as uint8 and every augmentation runs there, batched.

Why: small datasets (Fashion-MNIST, CIFAR, Imagenette-160, Tiny-ImageNet, synthetic) fit in GPU memory many times
over, and at their image sizes a fast GPU trains far quicker than a few CPU cores can decode, augment and collate PIL
images. Here the images are uploaded once (`DeviceDataset`; image files are decoded once, each image in the corner of
a canvas of the largest size, with its own size kept), batches are gathered on the device (`DeviceLoader`) and the
training recipe's whole augmentation runs batched with per-sample random parameters (`GpuAugment`); evaluation
preprocessing is `GpuEval`. On CPU tensors it works too (tests) but is not faster than per-image PIL for the
modern recipe (docs/bench-cpu.md), so `roadmap run` takes it on CUDA only unless asked.
Nothing in the iteration path reads a value back to the host, so the GPU is never stalled by the data path.

The goal is the *same distributions* as the CPU pipeline of `runner.fitting.timm_parts` (timm's `create_transform` and
`Mixup`), not the same random numbers: randomness comes from a `torch.Generator` on the device, so a run is
reproducible from its seed, but it draws different samples than Python's `random`/NumPy would. Every op's
arithmetic is PIL's, bit-exact on the test images; each module's docstring says what matches and where it deviates.

The modules, one concern each:

- `storage`: `DeviceDataset`, the images and labels on the device (image files decoded once into a canvas).
- `resample`: PIL's resampling (resize, crop, pad, flip) as batched matrix products with PIL's fixed-point weights.
- `sampling`: per-sample random parameters (crop boxes, integers, Beta lambdas) drawn on the device.
- `pixels`: PIL's 8-bit pixel arithmetic (grey, SMOOTH, blend, interpolation taps).
- `randaugment`: timm's RandAugment, batched, one op per sample.
- `augment`: `GpuAugment` (training) and `GpuEval` (evaluation), the recipe's pipelines.
- `loader`: `DeviceLoader`, batches per epoch from one seeded generator, sharded under DDP.

This package exports the names callers use; the rest is imported from the module that holds it.
"""

from runner.device_data.augment import GpuAugment, GpuEval
from runner.device_data.loader import DeviceLoader, loader_seed
from runner.device_data.randaugment import RAND_AUGMENT_OPS, RandAugmentConfig, apply_rand_augment_op
from runner.device_data.resample import padded_crop, resized_crop, resized_size
from runner.device_data.sampling import rrc_params
from runner.device_data.storage import DeviceDataset

__all__ = [
    "RAND_AUGMENT_OPS",
    "DeviceDataset",
    "DeviceLoader",
    "GpuAugment",
    "GpuEval",
    "RandAugmentConfig",
    "apply_rand_augment_op",
    "loader_seed",
    "padded_crop",
    "resized_crop",
    "resized_size",
    "rrc_params",
]
