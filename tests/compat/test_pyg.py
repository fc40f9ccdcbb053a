import types

import pytest
import torch

from irregconv.compat.pyg import from_pyg_data, to_pyg_data
from irregconv.data import make_cora_like
from irregconv.nn.graph import GCNConv
from irregconv.testing import with_package


def _small():
    return make_cora_like(num_nodes=200, num_features=30, num_edges=400, topic_words=10, num_val=20,
                          num_test=40, seed=1)


@with_package("torch_geometric")
def test_round_trip_through_pyg_data():
    graph = _small()
    data = to_pyg_data(graph)
    x, edge_index, edge_weight = from_pyg_data(data)
    assert x is graph.x and edge_index is graph.edge_index and edge_weight is None
    assert torch.equal(data.train_mask, graph.train_mask) and torch.equal(data.y, graph.y)


@with_package("torch_geometric")
def test_adj_t_from_pyg_to_sparse_tensor_transform():
    from torch_geometric.data import Data
    from torch_geometric.transforms import ToSparseTensor
    graph = _small()
    weight = torch.rand(graph.edge_index.size(1))
    data = Data(x=graph.x, edge_index=graph.edge_index, edge_weight=weight, num_nodes=graph.num_nodes)
    conv = GCNConv(30, 8)
    expected = conv(graph.x, graph.edge_index, weight)
    sparse = ToSparseTensor(attr="edge_weight", layout=torch.sparse_csr)(data.clone())
    assert getattr(sparse, "edge_index", None) is None
    torch.testing.assert_close(conv(sparse), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv(data), expected, rtol=1e-5, atol=1e-6)


def test_duck_typed_data_and_errors():
    graph = _small()
    data = types.SimpleNamespace(x=graph.x, edge_index=graph.edge_index)
    assert from_pyg_data(data)[2] is None
    with pytest.raises(ValueError, match="from_pyg_data: the SimpleNamespace has no node features 'x'"):
        from_pyg_data(types.SimpleNamespace(x=None, edge_index=graph.edge_index))
    with pytest.raises(ValueError, match="neither 'edge_index' nor a torch sparse 'adj_t'"):
        from_pyg_data(types.SimpleNamespace(x=graph.x, edge_index=None))
