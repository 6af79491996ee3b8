"""Datasets: one container, one registry, loaders that never fake data."""

from trustlab.data.container import Dataset
from trustlab.data.registry import DATASETS, dataset_table, get_spec, load_dataset

# Importing the loader modules registers their datasets.
from trustlab.data import tabular  # noqa: E402,F401
from trustlab.data import images  # noqa: E402,F401

__all__ = ["DATASETS", "Dataset", "dataset_table", "get_spec", "load_dataset"]
