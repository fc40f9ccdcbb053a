"""Every dense convolution variant of irregconv.nn.dense on one image batch: parameters, MACs, output shape.

    python examples/dense_variants_tour.py [--batch 2] [--channels 32] [--size 32]

The list is ``irregconv.nn.dense.__all__``, so new variants show up without editing this file. Each is built
with its defaults, ``in_channels = out_channels = C``, and run on the same ``[B, C, H, W]`` batch of smooth
random images; 3D variants see the batch as 4-frame clips ``[B, C, 4, H, W]``. MACs (multiply-accumulates)
are each module's own count of the computation it runs (``macs(input_size)``), per image. The default
``C = 48`` divides by every group count the defaults use (2, 3, 4, 16).
"""
from __future__ import annotations

import argparse
import inspect
import time

import torch
import torch.nn.functional as F

import irregconv.nn.dense as dense

#: values for required constructor arguments other than in_channels / out_channels
REQUIRED_ARGUMENTS = {"groups": 4}
#: constructor options where the defaults do not take a plain image
CONSTRUCTOR_OPTIONS = {
    "OctaveConv2d": dict(alpha_in=0.0),   # the first octave layer of a network reads an ordinary image
}
CLIP_FRAMES = 4


def build(name: str, channels: int) -> torch.nn.Module:
    """``irregconv.nn.dense.<name>`` with its defaults and ``channels`` in and out."""
    cls = getattr(dense, name)
    kwargs = {}
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.default is not parameter.empty or parameter.kind in (parameter.VAR_POSITIONAL,
                                                                          parameter.VAR_KEYWORD):
            continue
        if parameter.name in ("in_channels", "out_channels"):
            kwargs[parameter.name] = channels
        elif parameter.name in REQUIRED_ARGUMENTS:
            kwargs[parameter.name] = REQUIRED_ARGUMENTS[parameter.name]
        else:
            raise TypeError(f"{name} needs argument {parameter.name!r}; add a value to REQUIRED_ARGUMENTS")
    return cls(**kwargs, **CONSTRUCTOR_OPTIONS.get(name, {}))


def image_batch(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images ``[B, C, H, W]`` (upsampled noise, so neighbouring pixels correlate)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, channels, max(size // 4, 1), max(size // 4, 1), generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def describe(output) -> str:
    if isinstance(output, torch.Tensor):
        return str(list(output.shape))
    return " + ".join(describe(part) for part in output if part is not None)


def tour(batch: int, channels: int, size: int):
    """One row per variant: (name, parameters, MACs per image, output shape, milliseconds)."""
    images = image_batch(batch, channels, size)
    rows = []
    for name in dense.__all__:
        torch.manual_seed(0)
        module = build(name, channels).eval()
        x = images.unsqueeze(2).expand(-1, -1, CLIP_FRAMES, -1, -1) if getattr(module, "dims", 2) == 3 else images
        with torch.no_grad():
            module(x)                                    # warm-up: caches, lazy set-up
            start = time.perf_counter()
            output = module(x)
            milliseconds = 1e3 * (time.perf_counter() - start)
        rows.append((name, module.num_parameters(), module.macs(tuple(x.shape[1:])), describe(output), milliseconds))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    rows = tour(args.batch, args.channels, args.size)
    print(f"{len(rows)} dense variants on a batch [{args.batch}, {args.channels}, {args.size}, {args.size}] "
          f"(3D variants: {CLIP_FRAMES}-frame clips), {torch.get_num_threads()} threads")
    print(f"{'variant':26s} {'parameters':>11s} {'MMACs/image':>12s}  {'output shape':32s} {'ms':>7s}")
    for name, params, macs, shape, milliseconds in rows:
        print(f"{name:26s} {params:11,d} {macs / 1e6:12.2f}  {shape:32s} {milliseconds:7.1f}")


if __name__ == "__main__":
    main()
