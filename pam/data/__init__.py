"""PAM's data layer: the region-annotation schema, readers, datasets, mixtures and samplers.

The schema is documented in :mod:`pam.data.schema`; the sample dict the datasets yield in
:mod:`pam.data.datasets`.
"""

from pam.data.datasets import RegionDataset, RegionDatasetConfig, load_records, load_region_dataset, select_subset
from pam.data.mixture import MixtureComponent, MixtureDataset
from pam.data.prompt_sampling import PromptSamplingConfig
from pam.data.readers import read_jsonl, read_upstream_jsonl, write_jsonl
from pam.data.sampler import RegionSampler
from pam.data.schema import Event, MaskAnnotation, Record, RegionAnnotation, SchemaError
from pam.data.skips import BadSample, NoGoodSample, SkipTracker, TooManyBadSamples
from pam.data.synthetic import SyntheticConfig, generate_quickstart

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
