"""Test helpers: skip decorators, devices, real-data lookup, random generators and oracles."""
from .decorators import DEVICES, data_path, with_data, with_package
from .generators import random_coords, random_graph

__all__ = ["DEVICES", "data_path", "with_data", "with_package", "random_coords", "random_graph"]
