import argparse
import io
import statistics
import urllib.error
import urllib.request

import pytest
import torch

from irregconv.apps.cora import GCN, ProgressBar, add_cora_parser, load_graph, row_normalize, run_cora, train_gcn
from irregconv.data import make_cora_like
from irregconv.testing import data_path, with_data


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_cora_parser(parser.add_subparsers())
    return parser.parse_args(["cora"] + argv)


def _small():
    return make_cora_like(num_nodes=400, num_features=200, num_edges=800, topic_words=20, num_val=100,
                          num_test=150, seed=2)


def test_cli_runs_and_prints_the_summary(capsys):
    args = _parse(["--dataset", "synthetic", "--seeds", "2", "--epochs", "3"])
    assert args.run is run_cora
    assert run_cora(args) == 0
    out, err = capsys.readouterr()
    assert "synthetic: test accuracy" in out and "± " in out and "over 2 seed(s)" in out
    assert "median epoch time" in out
    assert "6/6" in err  # the progress bar reached the end


def test_cli_falls_back_to_synthetic_and_reports_missing_files(tmp_path, capsys, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    run_cora(_parse(["--root", str(tmp_path), "--seeds", "1", "--epochs", "1"]))
    assert "using the synthetic Cora-like graph" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="missing 8 file"):
        run_cora(_parse(["--root", str(tmp_path), "--dataset", "citeseer", "--seeds", "1"]))
    with pytest.raises(SystemExit, match="--seeds and --epochs must be >= 1"):
        run_cora(_parse(["--seeds", "0"]))


def test_load_graph_rejects_unknown_names():
    with pytest.raises(ValueError, match="load_graph: dataset must be one of"):
        load_graph("pubmed")


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_row_normalize(layout):
    x = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 2.0]])
    out = row_normalize(x if layout == "dense" else x.to_sparse_csr())
    assert out.layout == (torch.strided if layout == "dense" else torch.sparse_csr)
    torch.testing.assert_close(out.to_dense(), torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.5]]))


def test_training_learns_and_sparse_equals_dense_in_eval():
    graph = _small()
    result = train_gcn(graph, seed=0, epochs=60)
    assert result["test_acc"] > 0.6 and len(result["epoch_times"]) == 60 and 1 <= result["best_epoch"] <= 60
    torch.manual_seed(0)
    model = GCN(200, 16, 7).eval()
    x = row_normalize(graph.x)
    torch.testing.assert_close(model(x.to_sparse_csr(), graph.edge_index), model(x, graph.edge_index),
                               rtol=1e-5, atol=1e-6)


def test_training_is_bitwise_reproducible():
    graph = _small()
    a, b = train_gcn(graph, seed=5, epochs=20), train_gcn(graph, seed=5, epochs=20)
    assert a["test_acc"] == b["test_acc"] and a["best_epoch"] == b["best_epoch"]


def test_progress_bar_on_a_pipe():
    stream = io.StringIO()
    bar = ProgressBar(20, "x", stream=stream, width=10)
    for i in range(1, 21):
        bar.update(i)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("x [##########] 20/20")


@pytest.mark.slow
@with_data("planetoid", "cora")
@with_data("planetoid", "citeseer")
@pytest.mark.parametrize("name,target", [("cora", 81.0), ("citeseer", 70.0)])
def test_kipf_welling_accuracy_targets(name, target):
    graph = load_graph(name, data_path("planetoid"))
    accuracies = [100 * train_gcn(graph, seed)["test_acc"] for seed in range(10)]
    assert statistics.mean(accuracies) >= target
