"""Data: point-cloud readers, voxelization, Planetoid graphs, synthetic generators, batching (``collate``) and
the data root (``data_root``; ``python -m irregconv.data.fetch`` lays out downloaded data sets)."""
from .boxes import average_precision, bev_iou, points_in_boxes
from .collate import collate, collate_sparse_tensors
from .datasets import DATASETS, data_root
from .kitti import read_kitti_calib, read_kitti_labels
from .lidar_scene import Scene, SceneConfig, generate_scene
from .planetoid import NodeClassificationGraph, Planetoid
from .points import read_points
from .synthetic_graph import make_cora_like
from .voxelize import Voxels, voxelize

__all__ = ["DATASETS", "NodeClassificationGraph", "Planetoid", "Scene", "SceneConfig", "Voxels", "average_precision",
           "bev_iou", "collate", "collate_sparse_tensors", "data_root", "generate_scene", "make_cora_like",
           "points_in_boxes", "read_kitti_calib", "read_kitti_labels", "read_points", "voxelize"]
