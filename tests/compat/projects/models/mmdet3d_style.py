"""A SECOND-style middle encoder and a sparse U-Net written the way mmdetection3d writes its spconv code: the
version probe of ``mmdet3d/models/layers/spconv/__init__.py``; ``register_spconv2`` and the replaced
``SparseModule._load_from_state_dict`` (which permutes spconv 1.x checkpoints) of
``mmdet3d/models/layers/spconv/overwrite_spconv/write_spconv2.py``; ``replace_feature``, ``SparseBasicBlock``
(a ResNet block mixed with ``SparseModule``) and ``make_sparse_convmodule`` of
``mmdet3d/models/layers/sparse_block.py``; ``SparseEncoder`` and ``SparseUNet`` of
``mmdet3d/models/middle_encoders/``. The registries and builders stand in for mmengine / mmcv's.

Our own code, following how mmdetection3d uses the API. The ``import spconv...`` lines below are the only link
to a sparse-convolution library: the tests run this file unchanged on the real spconv and on irregconv's drop-in.
"""
import itertools

import torch
from torch import nn
from torch.nn.parameter import Parameter

CONV_LAYERS = {}   # mmengine's MODELS registry, for the convolutions spconv 2.x registers
NORM_LAYERS = {"BN1d": ("bn", nn.BatchNorm1d)}


# ------------------------------------------------------------- layers/spconv/overwrite_spconv


def register_spconv2():
    """Register spconv 2.x's convolutions by name and make ``SparseModule`` load spconv 1.x checkpoints."""
    try:
        from spconv.pytorch import (SparseConv2d, SparseConv3d, SparseConv4d, SparseConvTranspose2d,
                                    SparseConvTranspose3d, SparseInverseConv2d, SparseInverseConv3d, SparseModule,
                                    SubMConv2d, SubMConv3d, SubMConv4d)
    except ImportError:
        return False
    for layer in (SparseConv2d, SparseConv3d, SparseConv4d, SparseConvTranspose2d, SparseConvTranspose3d,
                  SparseInverseConv2d, SparseInverseConv3d, SubMConv2d, SubMConv3d, SubMConv4d):
        CONV_LAYERS[layer.__name__] = layer
    SparseModule._version = 2
    SparseModule._load_from_state_dict = _load_from_state_dict
    return True


def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                          error_msgs):
    """Weights saved before version 2 are spconv 1.x's ``(*kernel, C_in, C_out)``: their last axis moves
    first, giving spconv 2.x's ``(C_out, *kernel, C_in)``."""
    version = local_metadata.get("version", None)
    for hook in self._load_state_dict_pre_hooks.values():
        hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
    local_name_params = itertools.chain(self._parameters.items(), self._buffers.items())
    local_state = {k: v.data for k, v in local_name_params if v is not None}
    for name, param in local_state.items():
        key = prefix + name
        if key in state_dict:
            input_param = state_dict[key]
            if len(param.shape) == 0 and len(input_param.shape) == 1:
                input_param = input_param[0]
            if version != 2:
                dims = [len(input_param.shape) - 1] + list(range(len(input_param.shape) - 1))
                input_param = input_param.permute(*dims)
            if input_param.shape != param.shape:
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {input_param.shape} from "
                                  f"checkpoint, the shape in current model is {param.shape}.")
                continue
            if isinstance(input_param, Parameter):
                input_param = input_param.data
            param.copy_(input_param)
        elif strict:
            missing_keys.append(key)
    if strict:
        for key in state_dict:
            if key.startswith(prefix):
                input_name = key[len(prefix):].split(".", 1)[0]
                if input_name not in self._modules and input_name not in local_state:
                    unexpected_keys.append(key)


# -------------------------------------------------------------------------- layers/spconv


try:
    import spconv
except ImportError:
    IS_SPCONV2_AVAILABLE = False
else:
    if hasattr(spconv, "__version__") and spconv.__version__ >= "2.0.0":
        IS_SPCONV2_AVAILABLE = register_spconv2()
    else:
        IS_SPCONV2_AVAILABLE = False

if IS_SPCONV2_AVAILABLE:
    from spconv.pytorch import SparseConvTensor, SparseModule, SparseSequential
else:  # mmdet3d falls back to mmcv's spconv 1.x port here
    raise ImportError("spconv 2.x is not available")


# ---------------------------------------------------------------------- mmcv builders, mmdet's BasicBlock


def build_conv_layer(cfg, *args, **kwargs):
    cfg = dict(cfg)
    layer_type = cfg.pop("type")
    return CONV_LAYERS[layer_type](*args, **kwargs, **cfg)


def build_norm_layer(cfg, num_features, postfix=""):
    cfg = dict(cfg)
    abbreviation, layer = NORM_LAYERS[cfg.pop("type")]
    return f"{abbreviation}{postfix}", layer(num_features, **cfg)


class BasicBlock(nn.Module):
    """mmdet's ResNet basic block: two 3x3 convolutions built from configs, norms named ``bn1`` / ``bn2``."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, conv_cfg=None,
                 norm_cfg=dict(type="BN1d")):
        super().__init__()
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix=2)
        self.conv1 = build_conv_layer(conv_cfg, inplanes, planes, 3, stride=stride, padding=dilation,
                                      dilation=dilation, bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(conv_cfg, planes, planes, 3, padding=1, bias=False)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def norm1(self):
        return getattr(self, self.norm1_name)

    @property
    def norm2(self):
        return getattr(self, self.norm2_name)


# ---------------------------------------------------------------------------- layers/sparse_block


def replace_feature(out, new_features):
    if "replace_feature" in out.__dir__():
        return out.replace_feature(new_features)  # spconv 2.x
    out.features = new_features
    return out


class SparseBasicBlock(BasicBlock, SparseModule):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, conv_cfg=None, norm_cfg=None):
        SparseModule.__init__(self)
        BasicBlock.__init__(self, inplanes, planes, stride=stride, downsample=downsample, conv_cfg=conv_cfg,
                            norm_cfg=norm_cfg)

    def forward(self, x):
        identity = x.features
        assert x.features.dim() == 2, f"x.features.dim()={x.features.dim()}"
        out = self.conv1(x)
        out = replace_feature(out, self.norm1(out.features))
        out = replace_feature(out, self.relu(out.features))
        out = self.conv2(out)
        out = replace_feature(out, self.norm2(out.features))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = replace_feature(out, out.features + identity)
        out = replace_feature(out, self.relu(out.features))
        return out


def make_sparse_convmodule(in_channels, out_channels, kernel_size, indice_key, stride=1, padding=0,
                           conv_type="SubMConv3d", norm_cfg=None, order=("conv", "norm", "act")):
    assert isinstance(order, tuple) and len(order) <= 3
    assert set(order) | {"conv", "norm", "act"} == {"conv", "norm", "act"}
    conv_cfg = dict(type=conv_type, indice_key=indice_key)
    layers = list()
    for layer in order:
        if layer == "conv":
            if conv_type not in ["SparseInverseConv3d", "SparseInverseConv2d", "SparseInverseConv1d"]:
                layers.append(build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride=stride,
                                               padding=padding, bias=False))
            else:
                layers.append(build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, bias=False))
        elif layer == "norm":
            layers.append(build_norm_layer(norm_cfg, out_channels)[1])
        elif layer == "act":
            layers.append(nn.ReLU(inplace=True))
    return SparseSequential(*layers)


# ------------------------------------------------------------------------------- middle_encoders


class SparseEncoder(nn.Module):
    def __init__(self, in_channels, sparse_shape, order=("conv", "norm", "act"),
                 norm_cfg=dict(type="BN1d", eps=1e-3, momentum=0.01), base_channels=16, output_channels=128,
                 encoder_channels=((16,), (32, 32, 32), (64, 64, 64), (64, 64, 64)), encoder_strides=(2, 2, 2, 1),
                 encoder_paddings=((1,), (1, 1, 1), (1, 1, 1), ((0, 1, 1), 1, 1)), block_type="conv_module"):
        super().__init__()
        assert block_type in ["conv_module", "basicblock"]
        self.sparse_shape = sparse_shape
        self.encoder_channels = encoder_channels
        self.encoder_strides = encoder_strides
        self.encoder_paddings = encoder_paddings
        self.stage_num = len(self.encoder_channels)
        if order[0] != "conv":  # pre activate
            self.conv_input = make_sparse_convmodule(in_channels, base_channels, 3, norm_cfg=norm_cfg, padding=1,
                                                     indice_key="subm1", conv_type="SubMConv3d", order=("conv",))
        else:
            self.conv_input = make_sparse_convmodule(in_channels, base_channels, 3, norm_cfg=norm_cfg, padding=1,
                                                     indice_key="subm1", conv_type="SubMConv3d")
        encoder_out_channels = self.make_encoder_layers(make_sparse_convmodule, norm_cfg, base_channels,
                                                        block_type=block_type)
        self.conv_out = make_sparse_convmodule(encoder_out_channels, output_channels, kernel_size=(3, 1, 1),
                                               stride=(2, 1, 1), norm_cfg=norm_cfg, padding=0,
                                               indice_key="spconv_down2", conv_type="SparseConv3d")

    def forward(self, voxel_features, coors, batch_size):
        coors = coors.int()
        input_sp_tensor = SparseConvTensor(voxel_features, coors, self.sparse_shape, batch_size)
        x = self.conv_input(input_sp_tensor)
        encode_features = []
        for encoder_layer in self.encoder_layers:
            x = encoder_layer(x)
            encode_features.append(x)
        out = self.conv_out(encode_features[-1])
        spatial_features = out.dense()
        N, C, D, H, W = spatial_features.shape
        return spatial_features.view(N, C * D, H, W)

    def make_encoder_layers(self, make_block, norm_cfg, in_channels, block_type="conv_module",
                            conv_cfg=dict(type="SubMConv3d")):
        self.encoder_layers = SparseSequential()
        for i, blocks in enumerate(self.encoder_channels):
            blocks_list = []
            for j, out_channels in enumerate(tuple(blocks)):
                padding = tuple(self.encoder_paddings[i])[j]
                stride = self.encoder_strides[i]
                if i != 0 and j == 0 and block_type == "conv_module":
                    blocks_list.append(make_block(in_channels, out_channels, 3, norm_cfg=norm_cfg, stride=stride,
                                                  padding=padding, indice_key=f"spconv{i + 1}",
                                                  conv_type="SparseConv3d"))
                elif block_type == "basicblock":
                    if j == len(blocks) - 1 and i != len(self.encoder_channels) - 1:
                        blocks_list.append(make_block(in_channels, out_channels, 3, norm_cfg=norm_cfg,
                                                      stride=stride, padding=padding, indice_key=f"spconv{i + 1}",
                                                      conv_type="SparseConv3d"))
                    else:
                        blocks_list.append(SparseBasicBlock(out_channels, out_channels, norm_cfg=norm_cfg,
                                                            conv_cfg=conv_cfg))
                else:
                    blocks_list.append(make_block(in_channels, out_channels, 3, norm_cfg=norm_cfg, padding=padding,
                                                  indice_key=f"subm{i + 1}", conv_type="SubMConv3d"))
                in_channels = out_channels
            self.encoder_layers.add_module(f"encoder_layer{i + 1}", SparseSequential(*blocks_list))
        return out_channels


class SparseUNet(nn.Module):
    """Encoder as above, then a decoder of lateral SparseBasicBlocks, merge blocks, channel reduction and
    inverse convolutions (a submanifold convolution on the last stage) back to the input voxels."""

    def __init__(self, in_channels, sparse_shape, norm_cfg=dict(type="BN1d", eps=1e-3, momentum=0.01),
                 base_channels=16, encoder_channels=((16,), (32, 32), (64, 64)), encoder_paddings=((1,), (1, 1), (1, 1)),
                 decoder_channels=((64, 64, 32), (32, 32, 16), (16, 16, 16)), decoder_paddings=((1, 0), (1, 0), (1, 1))):
        super().__init__()
        self.sparse_shape = sparse_shape
        self.encoder_channels = encoder_channels
        self.encoder_paddings = encoder_paddings
        self.decoder_channels = decoder_channels
        self.decoder_paddings = decoder_paddings
        self.stage_num = len(self.encoder_channels)
        self.conv_input = make_sparse_convmodule(in_channels, base_channels, 3, norm_cfg=norm_cfg, padding=1,
                                                 indice_key="subm1", conv_type="SubMConv3d")
        encoder_out_channels = self.make_encoder_layers(make_sparse_convmodule, norm_cfg, base_channels)
        self.make_decoder_layers(make_sparse_convmodule, norm_cfg, encoder_out_channels)

    def forward(self, voxel_features, coors, batch_size):
        x = self.conv_input(SparseConvTensor(voxel_features, coors.int(), self.sparse_shape, batch_size))
        encode_features = []
        for encoder_layer in self.encoder_layers:
            x = encoder_layer(x)
            encode_features.append(x)
        x = encode_features[-1]
        for i in range(self.stage_num, 0, -1):
            x = self.decoder_layer_forward(encode_features[i - 1], x, getattr(self, f"lateral_layer{i}"),
                                           getattr(self, f"merge_layer{i}"), getattr(self, f"upsample_layer{i}"))
        return x

    def decoder_layer_forward(self, x_lateral, x_bottom, lateral_layer, merge_layer, upsample_layer):
        x = lateral_layer(x_lateral)
        x = replace_feature(x, torch.cat((x_bottom.features, x.features), dim=1))
        x_merge = merge_layer(x)
        x = self.reduce_channel(x, x_merge.features.shape[1])
        x = replace_feature(x, x_merge.features + x.features)
        return upsample_layer(x)

    @staticmethod
    def reduce_channel(x, out_channels):
        features = x.features
        n, in_channels = features.shape
        assert (in_channels % out_channels == 0) and (in_channels >= out_channels)
        return replace_feature(x, features.view(n, out_channels, -1).sum(dim=2))

    def make_encoder_layers(self, make_block, norm_cfg, in_channels):
        self.encoder_layers = SparseSequential()
        for i, blocks in enumerate(self.encoder_channels):
            blocks_list = []
            for j, out_channels in enumerate(tuple(blocks)):
                padding = tuple(self.encoder_paddings[i])[j]
                if i != 0 and j == 0:
                    blocks_list.append(make_block(in_channels, out_channels, 3, norm_cfg=norm_cfg, stride=2,
                                                  padding=padding, indice_key=f"spconv{i + 1}",
                                                  conv_type="SparseConv3d"))
                else:
                    blocks_list.append(make_block(in_channels, out_channels, 3, norm_cfg=norm_cfg, padding=padding,
                                                  indice_key=f"subm{i + 1}", conv_type="SubMConv3d"))
                in_channels = out_channels
            self.encoder_layers.add_module(f"encoder_layer{i + 1}", SparseSequential(*blocks_list))
        return out_channels

    def make_decoder_layers(self, make_block, norm_cfg, in_channels):
        block_num = len(self.decoder_channels)
        for i, block_channels in enumerate(self.decoder_channels):
            paddings = self.decoder_paddings[i]
            setattr(self, f"lateral_layer{block_num - i}",
                    SparseBasicBlock(in_channels, block_channels[0],
                                     conv_cfg=dict(type="SubMConv3d", indice_key=f"subm{block_num - i}"),
                                     norm_cfg=norm_cfg))
            setattr(self, f"merge_layer{block_num - i}",
                    make_block(in_channels * 2, block_channels[1], 3, norm_cfg=norm_cfg, padding=paddings[0],
                               indice_key=f"subm{block_num - i}", conv_type="SubMConv3d"))
            if block_num - i != 1:
                setattr(self, f"upsample_layer{block_num - i}",
                        make_block(in_channels, block_channels[2], 3, norm_cfg=norm_cfg,
                                   indice_key=f"spconv{block_num - i}", conv_type="SparseInverseConv3d"))
            else:  # a submanifold convolution instead of an inverse one on the last stage
                setattr(self, f"upsample_layer{block_num - i}",
                        make_block(in_channels, block_channels[2], 3, norm_cfg=norm_cfg, padding=paddings[1],
                                   indice_key="subm1", conv_type="SubMConv3d"))
            in_channels = block_channels[2]
