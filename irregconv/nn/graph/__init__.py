"""Graph convolutions: the rulebook is the edge list (one kernel offset)."""
from ...functional.knn import knn_graph
from .edge_conv import EdgeConv
from .gcn_conv import GCNConv
from .gin_conv import GINConv
from .graph_conv import GraphConv
from .sage_conv import SAGEConv

__all__ = ["EdgeConv", "GCNConv", "GINConv", "GraphConv", "SAGEConv", "knn_graph"]
