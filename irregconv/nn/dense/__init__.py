"""Dense-grid convolution variants, one file each (the full grid is a rulebook too)."""
# --- part 1: classic variants (issue 4) ---
from .cd_conv import CDConv2d
from .channel_shuffle import ChannelShuffle
from .circle_conv import CircleConv2d
from .conv2d import Conv2d
from .conv3d import Conv3d
from .conv_transpose2d import ConvTranspose2d
from .conv_transpose3d import ConvTranspose3d
from .coord_conv import CoordConv2d
from .cross_cd_conv import CrossCDConv2d
from .deform_conv import DeformConv2d
from .depthwise_separable_conv import DepthwiseSeparableConv2d
from .flattened_conv import FlattenedConv2d
from .inception_block import InceptionBlock
from .pixel_difference_conv import PixelDifferenceConv2d
from .shuffle_net_unit import ShuffleNetUnit
from .spatially_separable_conv import SpatiallySeparableConv2d

__all__ = ["CDConv2d", "ChannelShuffle", "CircleConv2d", "Conv2d", "Conv3d", "ConvTranspose2d", "ConvTranspose3d",
           "CoordConv2d", "CrossCDConv2d", "DeformConv2d", "DepthwiseSeparableConv2d", "FlattenedConv2d", "InceptionBlock",
           "PixelDifferenceConv2d", "ShuffleNetUnit", "SpatiallySeparableConv2d"]
# --- part 2: modern variants (issue 5) ---
from .ac_block import ACBlock2d
from .cond_conv import CondConv2d
from .diverse_branch_block import DiverseBranchBlock2d
from .do_conv import DOConv2d
from .dr_conv import DRConv2d
from .dynamic_conv import DynamicConv2d
from .dynet_conv import DyNetConv2d
from .ghost_module import GhostModule
from .het_conv import HetConv2d
from .ic_conv import ICConv2d
from .involution import Involution2d
from .octave_conv import OctaveConv2d
from .od_conv import ODConv2d
from .sc_conv import SCConv2d
from .split_attention_conv import ResNeStBottleneck, SplitAttentionConv2d

__all__ += [
    "ACBlock2d", "CondConv2d", "DiverseBranchBlock2d", "DOConv2d", "DRConv2d", "DynamicConv2d", "DyNetConv2d",
    "GhostModule", "HetConv2d", "ICConv2d", "Involution2d", "OctaveConv2d", "ODConv2d", "ResNeStBottleneck",
    "SCConv2d", "SplitAttentionConv2d",
]
