"""Stateless functions behind the modules: sparse conv and pooling, graph normalisation, dense conv."""
from .deform_conv import deform_conv2d
from .dense_conv import dense_conv, dense_conv_rulebook, pixel_shuffle_conv_transpose2d, space_to_batch_conv2d
from .graph import add_remaining_self_loops, add_self_loops, gcn_norm, propagate, sparse_dropout, sparse_matmul
from .knn import knn_graph
from .sparse_conv import sparse_conv
from .sparse_pool import global_pool, sparse_pool
