"""Test helpers: skip decorators, devices, real-data lookup, random generators and oracles."""
from .decorators import DEVICES, data_path, threads, with_data, with_package
from .generators import draw_sites_and_region, random_coords, random_graph
from .oracles import (RULEBOOK_KINDS, assert_close_with_grads, assert_parity, assert_rulebook_invariants,
                      assert_scaled_close, conv_at_sites, cpu_kernel_paths, densify, dense_conv, krsc_to_torch,
                      random_rulebook, reference_output_sites, reference_pairs, rulebook_triples, subm_conv_at_sites,
                      torch_rulebook_paths, torch_to_krsc, values_at, weight_from_torch, weight_to_torch)

__all__ = ["DEVICES", "data_path", "threads", "with_data", "with_package", "draw_sites_and_region",
           "random_coords", "random_graph", "RULEBOOK_KINDS", "assert_close_with_grads", "assert_parity",
           "assert_rulebook_invariants", "assert_scaled_close", "conv_at_sites", "cpu_kernel_paths", "densify",
           "dense_conv", "krsc_to_torch", "random_rulebook", "reference_output_sites", "reference_pairs",
           "rulebook_triples", "subm_conv_at_sites", "torch_rulebook_paths", "torch_to_krsc", "values_at",
           "weight_from_torch", "weight_to_torch"]
