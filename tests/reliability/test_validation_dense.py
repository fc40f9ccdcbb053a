"""Bad input to every dense-grid variant (``irregconv.nn.dense.__all__``, read at collection time so new
variants are covered as they land): channel mismatch, wrong rank, integer dtype and non-tensor input raise a
ValueError / TypeError naming the class; inputs smaller than a kernel raise a ValueError naming the axis
instead of torch's RuntimeError from inside ``F.conv*``."""
import re

import pytest
import torch

import irregconv.nn.dense as dense

C = 48  # divisible by every variant's groups / heads / group_channels defaults

#: constructors for variants whose signature is not ``(in_channels, out_channels)``
SPECIAL = {
    "ChannelShuffle": lambda: dense.ChannelShuffle(4),
    # alpha 0: one tensor in and out (the octave pair input is checked by its own tests)
    "OctaveConv2d": lambda: dense.OctaveConv2d(C, C, alpha_in=0.0, alpha_out=0.0),
}
#: variants without a fixed channel count or rank (a channel permutation of any [B, C, *S])
SHAPE_AGNOSTIC = {"ChannelShuffle"}
NAMES = sorted(dense.__all__)
SHAPED = [name for name in NAMES if name not in SHAPE_AGNOSTIC]


def _make(name: str) -> torch.nn.Module:
    return SPECIAL.get(name, lambda: getattr(dense, name)(C, C))().eval()


def _shape(name: str, channels: int = C):
    return (2, channels, 6, 6, 6) if name.endswith("3d") else (2, channels, 8, 8)


@pytest.mark.parametrize("name", NAMES)
def test_valid_input_runs(name):
    out = _make(name)(torch.randn(_shape(name)))
    assert out.shape[:2] == (2, C)


@pytest.mark.parametrize("name", SHAPED)
def test_channel_mismatch(name):
    with pytest.raises(ValueError, match=rf"{name}: (input|x_high) must have shape \[B, {C}, .*got \[2, 20, "):
        _make(name)(torch.randn(_shape(name, channels=20)))


@pytest.mark.parametrize("name", SHAPED)
@pytest.mark.parametrize("change", ["drop the batch axis", "add an axis"])
def test_wrong_rank(name, change):
    shape = _shape(name)
    shape = shape[1:] if change == "drop the batch axis" else (*shape, 1)
    got = re.escape(str(list(shape)))
    with pytest.raises(ValueError, match=rf"{name}: (input|x_high) must have shape \[B, {C}, .*got {got}"):
        _make(name)(torch.randn(shape))


@pytest.mark.parametrize("name", SHAPED)
def test_integer_input(name):
    with pytest.raises(TypeError, match=f"{name}: .*floating-point tensor.*torch.int64"):
        _make(name)(torch.ones(_shape(name), dtype=torch.int64))


@pytest.mark.parametrize("name", NAMES)
def test_not_a_tensor(name):
    with pytest.raises(TypeError, match=f"{name}: .*(tensor|one tensor).*got list"):
        _make(name)([[1.0, 2.0]])


def test_channel_shuffle_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match="ChannelShuffle: input channels=22 must be divisible by groups=4"):
        dense.ChannelShuffle(4)(torch.randn(2, 22, 4, 4))


@pytest.mark.parametrize("backend", ["native", "engine"])
@pytest.mark.parametrize("make, shape, match", [
    (lambda b: dense.Conv2d(C, C, 5, padding=0, backend=b), (1, C, 2, 2),
     r"Conv2d: output size on spatial axis 0 would be -2 \(input 2, kernel_size 5, stride 1, padding 0"),
    (lambda b: dense.Conv2d(C, C, 3, padding=0, dilation=(1, 4), backend=b), (1, C, 6, 6),
     r"Conv2d: output size on spatial axis 1 would be -2 \(input 6, kernel_size 3, stride 1, padding 0, dilation 4"),
    (lambda b: dense.Conv3d(C, C, (1, 1, 7), padding=0, backend=b), (1, C, 4, 4, 4),
     r"Conv3d: output size on spatial axis 2 would be -2 \(input 4, kernel_size 7"),
    (lambda b: dense.ConvTranspose2d(C, C, 1, padding=3, backend=b), (1, C, 2, 2),
     r"ConvTranspose2d: output size on spatial axis 0 would be -4; reduce padding \(3\)"),
    (lambda b: dense.ConvTranspose3d(C, C, 1, padding=(0, 0, 2), backend=b), (1, C, 2, 2, 2),
     r"ConvTranspose3d: output size on spatial axis 2 would be -2; reduce padding \(2\)"),
])
def test_input_smaller_than_the_kernel(make, shape, match, backend):
    with pytest.raises(ValueError, match=match):
        make(backend)(torch.randn(shape))


def test_input_smaller_than_the_kernel_in_composite_variants():
    with pytest.raises(ValueError, match=r"DeformConv2d: output size on spatial axis 0 would be -2 \(input 2, "
                                         r"kernel_size 5"):
        dense.DeformConv2d(C, C, 5, padding=0)(torch.randn(1, C, 2, 2))
    with pytest.raises(ValueError, match="SCConv2d: input is 3 x 8 but pooling_r=4; .* H and W must be >= 4"):
        dense.SCConv2d(C, C)(torch.randn(1, C, 3, 8))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(in_channels=0), ValueError, "in_channels must be an int >= 1, got 0"),
    (dict(in_channels=4.0), TypeError, r"in_channels must be an int, got 4.0 \(float\)"),
    (dict(kernel_size=0), ValueError, "kernel_size must be an int >= 1, got 0"),
    (dict(kernel_size=(3, 3, 3)), TypeError, r"kernel_size must be an int or a sequence of 2 ints, got \(3, 3, 3\)"),
    (dict(stride=0), ValueError, "stride must be an int >= 1, got 0"),
    (dict(padding=-1), ValueError, "padding must be an int >= 0, got -1"),
    (dict(groups=5), ValueError, "in_channels=48 must be divisible by groups=5"),
    (dict(backend="cuda"), ValueError, r"backend must be one of \('native', 'engine'"),
])
def test_conv_constructor_arguments(kwargs, error, match):
    args = dict(in_channels=C, out_channels=C)
    args.update(kwargs)
    with pytest.raises(error, match=f"Conv2d: {match}"):
        dense.Conv2d(**args)
