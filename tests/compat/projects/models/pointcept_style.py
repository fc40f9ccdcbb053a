"""Point-cloud segmentation models written the way Pointcept writes its spconv code: the SpUNet of
``pointcept/models/sparse_unet/spconv_unet_v1m1_base.py`` (a ``SparseModule`` residual block, a 5x5x5 stem,
stride-2 ``SparseConv3d`` / ``SparseInverseConv3d`` pairs joined by indice keys, a ``spconv.Identity()`` or
1x1x1 head, a classification mode); ``PointModule`` / ``PointSequential`` of ``pointcept/models/modules.py``
(dispatch by ``spconv.modules.is_spconv_module``); ``Point.sparsify`` of ``pointcept/models/utils/structure.py``;
and Point Transformer V3's block of ``point_transformer_v3m1_base.py`` (a ``SubMConv3d(..., bias=True,
indice_key=...)`` positional encoding, the features written back with ``replace_feature``), with a grid pooling
that builds a new sparse tensor from the point dict.

Our own code, following how Pointcept uses the API. The ``import spconv...`` line below is the only link to a
sparse-convolution library: the tests run this file unchanged on the real spconv and on irregconv's drop-in.
"""
from collections import OrderedDict
from functools import partial

import torch
import torch.nn as nn
import spconv.pytorch as spconv
from torch_geometric.utils import scatter


def offset2batch(offset):
    counts = torch.diff(offset, prepend=offset.new_zeros(1))
    return torch.repeat_interleave(torch.arange(len(offset), device=offset.device), counts)


# ---------------------------------------------------------------------------------- SpUNet


class BasicBlock(spconv.SparseModule):
    expansion = 1

    def __init__(self, in_channels, embed_channels, stride=1, norm_fn=None, indice_key=None, bias=False):
        super().__init__()
        assert norm_fn is not None
        if in_channels == embed_channels:
            self.proj = spconv.SparseSequential(nn.Identity())
        else:
            self.proj = spconv.SparseSequential(
                spconv.SubMConv3d(in_channels, embed_channels, kernel_size=1, bias=False),
                norm_fn(embed_channels),
            )
        self.conv1 = spconv.SubMConv3d(in_channels, embed_channels, kernel_size=3, stride=stride, padding=1,
                                       bias=bias, indice_key=indice_key)
        self.bn1 = norm_fn(embed_channels)
        self.relu = nn.ReLU()
        self.conv2 = spconv.SubMConv3d(embed_channels, embed_channels, kernel_size=3, stride=stride, padding=1,
                                       bias=bias, indice_key=indice_key)
        self.bn2 = norm_fn(embed_channels)
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = out.replace_feature(self.bn1(out.features))
        out = out.replace_feature(self.relu(out.features))
        out = self.conv2(out)
        out = out.replace_feature(self.bn2(out.features))
        out = out.replace_feature(out.features + self.proj(residual).features)
        out = out.replace_feature(self.relu(out.features))
        return out


class SpUNetBase(nn.Module):
    def __init__(self, in_channels, num_classes, base_channels=8, channels=(8, 16, 16, 8), layers=(1, 1, 1, 1),
                 cls_mode=False):
        super().__init__()
        assert len(layers) % 2 == 0 and len(layers) == len(channels)
        self.num_stages = len(layers) // 2
        self.cls_mode = cls_mode
        norm_fn = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)
        block = BasicBlock

        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, base_channels, kernel_size=5, padding=1, bias=False, indice_key="stem"),
            norm_fn(base_channels),
            nn.ReLU(),
        )
        enc_channels = base_channels
        dec_channels = channels[-1]
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.enc = nn.ModuleList()
        self.dec = nn.ModuleList() if not cls_mode else None
        for s in range(self.num_stages):
            self.down.append(spconv.SparseSequential(
                spconv.SparseConv3d(enc_channels, channels[s], kernel_size=2, stride=2, bias=False,
                                    indice_key=f"spconv{s + 1}"),
                norm_fn(channels[s]),
                nn.ReLU(),
            ))
            self.enc.append(spconv.SparseSequential(OrderedDict([
                (f"block{i}", block(channels[s], channels[s], norm_fn=norm_fn, indice_key=f"subm{s + 1}"))
                for i in range(layers[s])
            ])))
            if not cls_mode:
                self.up.append(spconv.SparseSequential(
                    spconv.SparseInverseConv3d(channels[len(channels) - s - 2], dec_channels, kernel_size=2,
                                               bias=False, indice_key=f"spconv{s + 1}"),
                    norm_fn(dec_channels),
                    nn.ReLU(),
                ))
                self.dec.append(spconv.SparseSequential(OrderedDict([
                    (f"block{i}", block(dec_channels + enc_channels if i == 0 else dec_channels, dec_channels,
                                        norm_fn=norm_fn, indice_key=f"subm{s}"))
                    for i in range(layers[len(channels) - s - 1])
                ])))
            enc_channels = channels[s]
            dec_channels = channels[len(channels) - s - 2]

        final_in_channels = channels[-1] if not cls_mode else channels[self.num_stages - 1]
        self.final = (
            spconv.SubMConv3d(final_in_channels, num_classes, kernel_size=1, padding=1, bias=True)
            if num_classes > 0
            else spconv.Identity()
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, spconv.SubMConv3d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, input_dict):
        grid_coord = input_dict["grid_coord"]
        feat = input_dict["feat"]
        offset = input_dict["offset"]
        batch = offset2batch(offset)
        sparse_shape = torch.add(torch.max(grid_coord, dim=0).values, 96).tolist()
        x = spconv.SparseConvTensor(
            features=feat,
            indices=torch.cat([batch.unsqueeze(-1).int(), grid_coord.int()], dim=1).contiguous(),
            spatial_shape=sparse_shape,
            batch_size=batch[-1].tolist() + 1,
        )
        x = self.conv_input(x)
        skips = [x]
        for s in range(self.num_stages):
            x = self.down[s](x)
            x = self.enc[s](x)
            skips.append(x)
        x = skips.pop(-1)
        if not self.cls_mode:
            for s in reversed(range(self.num_stages)):
                x = self.up[s](x)
                skip = skips.pop(-1)
                x = x.replace_feature(torch.cat((x.features, skip.features), dim=1))
                x = self.dec[s](x)
        x = self.final(x)
        if self.cls_mode:
            x = x.replace_feature(scatter(x.features, x.indices[:, 0].long(), reduce="mean", dim=0))
        return x.features


# ------------------------------------------------------------------- Point, PointModule, PointSequential


class Point(dict):
    """Pointcept's point dictionary (attribute access, ``batch`` derived from ``offset``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "batch" not in self.keys() and "offset" in self.keys():
            self["batch"] = offset2batch(self.offset)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def sparsify(self, pad=96):
        if "sparse_shape" in self.keys():
            sparse_shape = self.sparse_shape
        else:
            sparse_shape = torch.add(torch.max(self.grid_coord, dim=0).values, pad).tolist()
        self["sparse_conv_feat"] = spconv.SparseConvTensor(
            features=self.feat,
            indices=torch.cat([self.batch.unsqueeze(-1).int(), self.grid_coord.int()], dim=1).contiguous(),
            spatial_shape=sparse_shape,
            batch_size=self.batch[-1].tolist() + 1,
        )
        self["sparse_shape"] = sparse_shape


class PointModule(nn.Module):
    """Modules of this type take the whole Point inside a PointSequential."""


class PointSequential(PointModule):
    def __init__(self, *args, **kwargs):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)
        for name, module in kwargs.items():
            self.add_module(name, module)

    def forward(self, input):
        for k, module in self._modules.items():
            if isinstance(module, PointModule):
                input = module(input)
            elif spconv.modules.is_spconv_module(module):
                if isinstance(input, Point):
                    input.sparse_conv_feat = module(input.sparse_conv_feat)
                    input.feat = input.sparse_conv_feat.features
                else:
                    input = module(input)
            else:
                if isinstance(input, Point):
                    input.feat = module(input.feat)
                    if "sparse_conv_feat" in input.keys():
                        input.sparse_conv_feat = input.sparse_conv_feat.replace_feature(input.feat)
                elif isinstance(input, spconv.SparseConvTensor):
                    if input.indices.shape[0] != 0:
                        input = input.replace_feature(module(input.features))
                else:
                    input = module(input)
        return input


# -------------------------------------------------------------------- Point Transformer V3-style blocks


class Block(PointModule):
    """PT-v3's block without the serialized attention: conditional positional encoding (a submanifold
    convolution with bias), then a pre-norm MLP, each with a residual."""

    def __init__(self, channels, mlp_ratio=2.0, cpe_indice_key=None):
        super().__init__()
        self.cpe = PointSequential(
            spconv.SubMConv3d(channels, channels, kernel_size=3, bias=True, indice_key=cpe_indice_key),
            nn.Linear(channels, channels),
            nn.LayerNorm(channels),
        )
        self.norm = PointSequential(nn.LayerNorm(channels))
        self.mlp = PointSequential(nn.Sequential(
            nn.Linear(channels, int(channels * mlp_ratio)), nn.GELU(), nn.Linear(int(channels * mlp_ratio), channels)))

    def forward(self, point):
        shortcut = point.feat
        point = self.cpe(point)
        point.feat = shortcut + point.feat
        shortcut = point.feat
        point = self.mlp(self.norm(point))
        point.feat = shortcut + point.feat
        point.sparse_conv_feat = point.sparse_conv_feat.replace_feature(point.feat)
        return point


class GridPooling(PointModule):
    """Points of each 2x2x2 cell merged (features projected, then max), and a new sparse tensor built."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)

    def forward(self, point):
        grid_coord = point.grid_coord >> 1
        key = torch.cat([point.batch.unsqueeze(-1), grid_coord], dim=1)
        unique, cluster = torch.unique(key, dim=0, return_inverse=True)
        pooled = Point(
            feat=scatter(self.proj(point.feat), cluster, dim=0, reduce="max"),
            grid_coord=unique[:, 1:],
            batch=unique[:, 0],
        )
        pooled.sparsify()
        return pooled


class PointEncoder(PointModule):
    def __init__(self, in_channels, channels=16, num_classes=0):
        super().__init__()
        self.embedding = PointSequential(
            spconv.SubMConv3d(in_channels, channels, kernel_size=5, padding=1, bias=False, indice_key="stem"),
            nn.BatchNorm1d(channels),
            nn.GELU(),
        )
        self.stage1 = PointSequential(Block(channels, cpe_indice_key="stage1"), Block(channels, cpe_indice_key="stage1"))
        self.down = GridPooling(channels, 2 * channels)
        self.stage2 = PointSequential(Block(2 * channels, cpe_indice_key="stage2"))
        self.head = PointSequential(nn.Linear(2 * channels, num_classes) if num_classes > 0 else spconv.Identity())

    def forward(self, point):
        point.sparsify()
        point = self.embedding(point)
        point = self.stage1(point)
        point = self.down(point)
        point = self.stage2(point)
        return self.head(point)
