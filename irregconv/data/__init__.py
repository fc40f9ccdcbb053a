"""Data: point-cloud readers, voxelization, Planetoid graphs and synthetic generators."""
from .boxes import average_precision, bev_iou, points_in_boxes
from .kitti import read_kitti_calib, read_kitti_labels
from .lidar_scene import Scene, SceneConfig, generate_scene
from .planetoid import NodeClassificationGraph, Planetoid
from .points import read_points
from .synthetic_graph import make_cora_like
from .voxelize import Voxels, voxelize

__all__ = ["NodeClassificationGraph", "Planetoid", "Scene", "SceneConfig", "Voxels", "average_precision", "bev_iou",
           "generate_scene", "make_cora_like", "points_in_boxes", "read_kitti_calib", "read_kitti_labels",
           "read_points", "voxelize"]
