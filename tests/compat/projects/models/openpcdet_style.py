"""A small voxel detector front end written the way OpenPCDet writes its spconv code: the version probe,
``replace_feature`` and ``find_all_spconv_keys`` of ``pcdet/utils/spconv_utils.py``; the voxel generator
wrapper of ``pcdet/datasets/processor/data_processor.py`` (``Point2VoxelCPU3d`` fed a cumm tensorview, results
read with ``.numpy()``); the batch collation of ``pcdet/datasets/dataset.py``; ``MeanVFE``; the blocks and
backbones of ``pcdet/models/backbones_3d/spconv_backbone.py`` (VoxelBackBone8x) and ``spconv_unet.py``
(UNetV2), the indices handling of ``spconv_backbone_voxelnext.py`` (in-place scaling, reassignment, a BEV
tensor), and the checkpoint loading of ``pcdet/models/detectors/detector3d_template.py``.

Our own code, following how OpenPCDet uses the API. The ``import spconv...`` lines below are the only link to
a sparse-convolution library: the tests run this file unchanged on the real spconv and on irregconv's drop-in.
"""
from functools import partial
from typing import Set

import numpy as np
import torch
import torch.nn as nn

import spconv
if float(spconv.__version__[2:]) >= 2.2:
    spconv.constants.SPCONV_USE_DIRECT_TABLE = False

try:
    import spconv.pytorch as spconv
except ImportError:
    import spconv as spconv

try:  # spconv 1.x names first, as OpenPCDet's data processor tries them
    from spconv.utils import VoxelGeneratorV2 as VoxelGenerator
    SPCONV_VER = 1
except ImportError:
    from spconv.utils import Point2VoxelCPU3d as VoxelGenerator
    SPCONV_VER = 2

import cumm.tensorview as tv


# ------------------------------------------------------------------------------ spconv_utils


def find_all_spconv_keys(model: nn.Module, prefix="") -> Set[str]:
    """State-dict keys of every sparse convolution weight (those whose layout changed across versions)."""
    found_keys: Set[str] = set()
    for name, child in model.named_children():
        new_prefix = f"{prefix}.{name}" if prefix != "" else name
        if isinstance(child, spconv.conv.SparseConvolution):
            found_keys.add(f"{new_prefix}.weight")
        found_keys.update(find_all_spconv_keys(child, prefix=new_prefix))
    return found_keys


def replace_feature(out, new_features):
    if "replace_feature" in out.__dir__():
        return out.replace_feature(new_features)  # spconv 2.x
    out.features = new_features
    return out


def load_params_from_state_dict(model: nn.Module, model_state_disk: dict):
    """Load a checkpoint whose sparse convolution weights may be in spconv 1.x's ``[k1, k2, k3, C_in, C_out]``."""
    state_dict = model.state_dict()
    spconv_keys = find_all_spconv_keys(model)
    update_model_state = {}
    for key, val in model_state_disk.items():
        if key in spconv_keys and key in state_dict and state_dict[key].shape != val.shape:
            val_native = val.transpose(-1, -2)
            if val_native.shape == state_dict[key].shape:
                val = val_native.contiguous()
            else:
                val_implicit = val.permute(4, 0, 1, 2, 3)
                if val_implicit.shape == state_dict[key].shape:
                    val = val_implicit.contiguous()
        if key in state_dict and state_dict[key].shape == val.shape:
            update_model_state[key] = val
    state_dict.update(update_model_state)
    model.load_state_dict(state_dict)
    return state_dict, update_model_state


# ---------------------------------------------------------------------------- data processing


class VoxelGeneratorWrapper:
    def __init__(self, vsize_xyz, coors_range_xyz, num_point_features, max_num_points_per_voxel, max_num_voxels):
        self._voxel_generator = VoxelGenerator(
            vsize_xyz=vsize_xyz,
            coors_range_xyz=coors_range_xyz,
            num_point_features=num_point_features,
            max_num_points_per_voxel=max_num_points_per_voxel,
            max_num_voxels=max_num_voxels,
        )

    def generate(self, points):
        voxel_output = self._voxel_generator.point_to_voxel(tv.from_numpy(points))
        tv_voxels, tv_coordinates, tv_num_points = voxel_output
        # copies: a numpy_view() would die with the generator
        return tv_voxels.numpy(), tv_coordinates.numpy(), tv_num_points.numpy()


class DataProcessor:
    def __init__(self, point_cloud_range, voxel_size, max_points_per_voxel=5, max_voxels=40000,
                 num_point_features=4):
        self.point_cloud_range = np.array(point_cloud_range, dtype=np.float32)
        grid_size = (self.point_cloud_range[3:6] - self.point_cloud_range[0:3]) / np.array(voxel_size)
        self.grid_size = np.round(grid_size).astype(np.int64)
        self.voxel_size = voxel_size
        self.voxel_generator = VoxelGeneratorWrapper(
            vsize_xyz=voxel_size,
            coors_range_xyz=self.point_cloud_range,
            num_point_features=num_point_features,
            max_num_points_per_voxel=max_points_per_voxel,
            max_num_voxels=max_voxels,
        )

    def mask_points_by_range(self, points):
        limit = self.point_cloud_range
        return ((points[:, 0] >= limit[0]) & (points[:, 0] <= limit[3])
                & (points[:, 1] >= limit[1]) & (points[:, 1] <= limit[4]))

    def forward(self, data_dict):
        points = data_dict["points"]
        points = points[self.mask_points_by_range(points)]
        voxels, coordinates, num_points = self.voxel_generator.generate(points)
        data_dict["points"] = points
        data_dict["voxels"] = voxels
        data_dict["voxel_coords"] = coordinates
        data_dict["voxel_num_points"] = num_points
        return data_dict


def collate_batch(batch_list):
    """Voxels of several scans as one batch: coordinates get their batch index as a first column."""
    coors = [np.pad(d["voxel_coords"], ((0, 0), (1, 0)), mode="constant", constant_values=i)
             for i, d in enumerate(batch_list)]
    return {
        "voxels": torch.from_numpy(np.concatenate([d["voxels"] for d in batch_list], axis=0)),
        "voxel_num_points": torch.from_numpy(np.concatenate([d["voxel_num_points"] for d in batch_list], axis=0)),
        "voxel_coords": torch.from_numpy(np.concatenate(coors, axis=0)),
        "batch_size": len(batch_list),
    }


class MeanVFE(nn.Module):
    def __init__(self, num_point_features):
        super().__init__()
        self.num_point_features = num_point_features

    def forward(self, batch_dict):
        voxel_features, voxel_num_points = batch_dict["voxels"], batch_dict["voxel_num_points"]
        points_mean = voxel_features[:, :, :].sum(dim=1, keepdim=False)
        normalizer = torch.clamp_min(voxel_num_points.view(-1, 1), min=1.0).type_as(voxel_features)
        batch_dict["voxel_features"] = (points_mean / normalizer).contiguous()
        return batch_dict


# ---------------------------------------------------------------------------------- backbones


def post_act_block(in_channels, out_channels, kernel_size, indice_key=None, stride=1, padding=0,
                   conv_type="subm", norm_fn=None):
    if conv_type == "subm":
        conv = spconv.SubMConv3d(in_channels, out_channels, kernel_size, bias=False, indice_key=indice_key)
    elif conv_type == "spconv":
        conv = spconv.SparseConv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                   bias=False, indice_key=indice_key)
    elif conv_type == "inverseconv":
        conv = spconv.SparseInverseConv3d(in_channels, out_channels, kernel_size, indice_key=indice_key, bias=False)
    else:
        raise NotImplementedError(conv_type)
    return spconv.SparseSequential(conv, norm_fn(out_channels), nn.ReLU())


class SparseBasicBlock(spconv.SparseModule):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, norm_fn=None, downsample=None, indice_key=None):
        super().__init__()
        bias = norm_fn is not None
        self.conv1 = spconv.SubMConv3d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=bias,
                                       indice_key=indice_key)
        self.bn1 = norm_fn(planes)
        self.relu = nn.ReLU()
        self.conv2 = spconv.SubMConv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=bias,
                                       indice_key=indice_key)
        self.bn2 = norm_fn(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = replace_feature(out, self.bn1(out.features))
        out = replace_feature(out, self.relu(out.features))
        out = self.conv2(out)
        out = replace_feature(out, self.bn2(out.features))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = replace_feature(out, out.features + identity.features)
        out = replace_feature(out, self.relu(out.features))
        return out


class VoxelBackBone8x(nn.Module):
    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__()
        self.model_cfg = model_cfg
        norm_fn = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)
        self.sparse_shape = grid_size[::-1] + [1, 0, 0]

        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, 16, 3, padding=1, bias=False, indice_key="subm1"),
            norm_fn(16),
            nn.ReLU(),
        )
        block = post_act_block
        self.conv1 = spconv.SparseSequential(
            block(16, 16, 3, norm_fn=norm_fn, padding=1, indice_key="subm1"),
        )
        self.conv2 = spconv.SparseSequential(
            block(16, 32, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key="spconv2", conv_type="spconv"),
            block(32, 32, 3, norm_fn=norm_fn, padding=1, indice_key="subm2"),
        )
        self.conv3 = spconv.SparseSequential(
            block(32, 64, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key="spconv3", conv_type="spconv"),
            block(64, 64, 3, norm_fn=norm_fn, padding=1, indice_key="subm3"),
        )
        self.conv4 = spconv.SparseSequential(
            block(64, 64, 3, norm_fn=norm_fn, stride=2, padding=(0, 1, 1), indice_key="spconv4",
                  conv_type="spconv"),
            block(64, 64, 3, norm_fn=norm_fn, padding=1, indice_key="subm4"),
        )
        last_pad = self.model_cfg.get("last_pad", 0)
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv3d(64, 128, (3, 1, 1), stride=(2, 1, 1), padding=last_pad, bias=False,
                                indice_key="spconv_down2"),
            norm_fn(128),
            nn.ReLU(),
        )
        self.num_point_features = 128

    def forward(self, batch_dict):
        voxel_features, voxel_coords = batch_dict["voxel_features"], batch_dict["voxel_coords"]
        batch_size = batch_dict["batch_size"]
        input_sp_tensor = spconv.SparseConvTensor(
            features=voxel_features,
            indices=voxel_coords.int(),
            spatial_shape=self.sparse_shape,
            batch_size=batch_size,
        )
        x = self.conv_input(input_sp_tensor)
        x_conv1 = self.conv1(x)
        x_conv2 = self.conv2(x_conv1)
        x_conv3 = self.conv3(x_conv2)
        x_conv4 = self.conv4(x_conv3)
        out = self.conv_out(x_conv4)
        batch_dict.update({"encoded_spconv_tensor": out, "encoded_spconv_tensor_stride": 8})
        batch_dict.update({"multi_scale_3d_features": {
            "x_conv1": x_conv1, "x_conv2": x_conv2, "x_conv3": x_conv3, "x_conv4": x_conv4}})
        return batch_dict


class UNetV2(VoxelBackBone8x):
    """VoxelBackBone8x's encoder and a decoder back to the input voxels: lateral SparseBasicBlocks (with
    bias), merge blocks, channel reduction, and inverse convolutions found by their indice keys."""

    def __init__(self, model_cfg, input_channels, grid_size, **kwargs):
        super().__init__(model_cfg, input_channels, grid_size, **kwargs)
        norm_fn = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)
        block = post_act_block
        self.conv_up_t4 = SparseBasicBlock(64, 64, indice_key="subm4", norm_fn=norm_fn)
        self.conv_up_m4 = block(128, 64, 3, norm_fn=norm_fn, padding=1, indice_key="subm4")
        self.inv_conv4 = block(64, 64, 3, norm_fn=norm_fn, indice_key="spconv4", conv_type="inverseconv")
        self.conv_up_t3 = SparseBasicBlock(64, 64, indice_key="subm3", norm_fn=norm_fn)
        self.conv_up_m3 = block(128, 64, 3, norm_fn=norm_fn, padding=1, indice_key="subm3")
        self.inv_conv3 = block(64, 32, 3, norm_fn=norm_fn, indice_key="spconv3", conv_type="inverseconv")
        self.conv_up_t2 = SparseBasicBlock(32, 32, indice_key="subm2", norm_fn=norm_fn)
        self.conv_up_m2 = block(64, 32, 3, norm_fn=norm_fn, indice_key="subm2")
        self.inv_conv2 = block(32, 16, 3, norm_fn=norm_fn, indice_key="spconv2", conv_type="inverseconv")
        self.conv_up_t1 = SparseBasicBlock(16, 16, indice_key="subm1", norm_fn=norm_fn)
        self.conv_up_m1 = block(32, 16, 3, norm_fn=norm_fn, indice_key="subm1")
        self.conv5 = spconv.SparseSequential(block(16, 16, 3, norm_fn=norm_fn, padding=1, indice_key="subm1"))
        self.num_point_features = 16

    def UR_block_forward(self, x_lateral, x_bottom, conv_t, conv_m, conv_inv):
        x_trans = conv_t(x_lateral)
        x = replace_feature(x_trans, torch.cat((x_bottom.features, x_trans.features), dim=1))
        x_m = conv_m(x)
        x = self.channel_reduction(x, x_m.features.shape[1])
        x = replace_feature(x, x_m.features + x.features)
        return conv_inv(x)

    @staticmethod
    def channel_reduction(x, out_channels):
        features = x.features
        n, in_channels = features.shape
        assert (in_channels % out_channels == 0) and (in_channels >= out_channels)
        return replace_feature(x, features.view(n, out_channels, -1).sum(dim=2))

    def forward(self, batch_dict):
        batch_dict = super().forward(batch_dict)
        scales = batch_dict["multi_scale_3d_features"]
        x_conv1, x_conv2, x_conv3, x_conv4 = (scales[f"x_conv{i}"] for i in range(1, 5))
        x_up4 = self.UR_block_forward(x_conv4, x_conv4, self.conv_up_t4, self.conv_up_m4, self.inv_conv4)
        x_up3 = self.UR_block_forward(x_conv3, x_up4, self.conv_up_t3, self.conv_up_m3, self.inv_conv3)
        x_up2 = self.UR_block_forward(x_conv2, x_up3, self.conv_up_t2, self.conv_up_m2, self.inv_conv2)
        x_up1 = self.UR_block_forward(x_conv1, x_up2, self.conv_up_t1, self.conv_up_m1, self.conv5)
        batch_dict["point_features"] = x_up1.features
        batch_dict["point_coords"] = x_up1.indices
        return batch_dict


class VoxelNeXtStyleBEV(nn.Module):
    """VoxelNeXt's tail on two further strided stages: their indices scaled in place onto the stride-8 grid,
    features and indices of three tensors concatenated (``indices`` assigned), summed onto a BEV plane,
    then 2D sparse convolutions (the last one with bias)."""

    def __init__(self, channels=64, out_channel=32):
        super().__init__()
        norm_fn = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)
        block = post_act_block
        self.conv5 = spconv.SparseSequential(
            block(channels, channels, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key="spconv5",
                  conv_type="spconv"),
            SparseBasicBlock(channels, channels, norm_fn=norm_fn, indice_key="res5"),
        )
        self.conv6 = spconv.SparseSequential(
            block(channels, channels, 3, norm_fn=norm_fn, stride=2, padding=1, indice_key="spconv6",
                  conv_type="spconv"),
        )
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv2d(channels, out_channel, 3, stride=1, padding=1, bias=False,
                                indice_key="spconv_down2"),
            norm_fn(out_channel),
            nn.ReLU(),
        )
        self.shared_conv = spconv.SparseSequential(
            spconv.SubMConv2d(out_channel, out_channel, 3, stride=1, padding=1, bias=True),
            nn.BatchNorm1d(out_channel),
            nn.ReLU(True),
        )

    def bev_out(self, x_conv):
        features_cat = x_conv.features
        indices_cat = x_conv.indices[:, [0, 2, 3]]
        spatial_shape = x_conv.spatial_shape[1:]
        indices_unique, _inv = torch.unique(indices_cat, dim=0, return_inverse=True)
        features_unique = features_cat.new_zeros((indices_unique.shape[0], features_cat.shape[1]))
        features_unique.index_add_(0, _inv, features_cat)
        return spconv.SparseConvTensor(
            features=features_unique,
            indices=indices_unique,
            spatial_shape=spatial_shape,
            batch_size=x_conv.batch_size,
        )

    def forward(self, x_conv4):
        x_conv5 = self.conv5(x_conv4)
        x_conv6 = self.conv6(x_conv5)
        x_conv5.indices[:, 1:] *= 2
        x_conv6.indices[:, 1:] *= 4
        x_conv4 = x_conv4.replace_feature(torch.cat([x_conv4.features, x_conv5.features, x_conv6.features]))
        x_conv4.indices = torch.cat([x_conv4.indices, x_conv5.indices, x_conv6.indices])
        out = self.bev_out(x_conv4)
        out = self.conv_out(out)
        return self.shared_conv(out)
