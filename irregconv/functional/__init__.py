"""Stateless functions behind the modules: sparse conv and pooling, graph normalisation, dense conv."""
from .sparse_conv import sparse_conv
from .sparse_pool import global_pool, sparse_pool
