"""PAM's data layer: the region-annotation schema, readers, datasets, mixtures and samplers.

The schema is documented in :mod:`pam.data.schema`; the sample dict the datasets yield in
:mod:`pam.data.datasets`.
"""

import importlib

# name -> submodule; imported on first use (PEP 562), so `from pam.data.schema import ...` (the data
# pipeline's CLI, the training config's schema) does not import torch through the datasets module
_EXPORTS = {
    "pam.data.datasets": (
        "RegionDataset",
        "RegionDatasetConfig",
        "load_records",
        "load_region_dataset",
        "select_subset",
    ),
    "pam.data.mixture": ("MixtureComponent", "MixtureDataset"),
    "pam.data.prompt_sampling": ("PromptSamplingConfig",),
    "pam.data.readers": ("read_jsonl", "read_upstream_jsonl", "write_jsonl"),
    "pam.data.sampler": ("RegionSampler",),
    "pam.data.schema": ("Event", "MaskAnnotation", "Record", "RegionAnnotation", "SchemaError"),
    "pam.data.skips": ("BadSample", "NoGoodSample", "SkipTracker", "TooManyBadSamples"),
    "pam.data.synthetic": ("SyntheticConfig", "generate_quickstart"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pam.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = [
    "BadSample",
    "Event",
    "MaskAnnotation",
    "MixtureComponent",
    "MixtureDataset",
    "NoGoodSample",
    "PromptSamplingConfig",
    "Record",
    "RegionAnnotation",
    "RegionDataset",
    "RegionDatasetConfig",
    "RegionSampler",
    "SchemaError",
    "SkipTracker",
    "SyntheticConfig",
    "TooManyBadSamples",
    "generate_quickstart",
    "load_records",
    "load_region_dataset",
    "read_jsonl",
    "read_upstream_jsonl",
    "select_subset",
    "write_jsonl",
]
