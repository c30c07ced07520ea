"""Thin-plate-spline (TPS) warps for the static-image augmentation, in numpy + OpenCV.

The reference warps with probability 0.33: 12 control points uniform in the normalised frame [0, 1]², each
displaced by N(0, 0.02) (in normalised units). The output pixel at a displaced point reads the source at the
original point, and a TPS interpolates between control points. Here the spline interpolates the *displacement*
(source minus output position), so zero displacement gives exactly the identity map.

TPS with kernel U(r) = r² log r and control points c_i (the displaced points), displacement d_i:
    f(p) = a_0 + a_x·p_x + a_y·p_y + Σ_i w_i U(|p - c_i|),   f(c_i) = d_i,   Σ w_i = Σ w_i c_i = 0.
"""
from __future__ import annotations

import numpy as np

TPS_PROBABILITY = 0.33
TPS_NUM_CONTROL_POINTS = 12
TPS_DISPLACEMENT_STD = 0.02
"""Standard deviation of control-point displacements, in units of the frame's width / height."""
_AFFINE_TERMS = 3  # 1, x, y
_TINY_SQUARED_DISTANCE = 1e-20  # U(0) = 0; clamping keeps log finite there (r² log r² -> 0)


def _kernel(distance_squared: np.ndarray) -> np.ndarray:
    """U(r) = r² log r written with r²: ½ r² log r²; 0 at r = 0."""
    safe = np.where(distance_squared > 0, distance_squared, 1.0)
    return 0.5 * distance_squared * np.log(safe)


def fit_displacement_spline(control_points: np.ndarray, displacements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve for the TPS that takes value `displacements` at `control_points`.

    Args:
        control_points: float64 K×2 (x, y) positions, pairwise distinct.
        displacements: float64 K×2 values at those positions.
    Returns:
        (weights K×2, affine 3×2) such that f(p) = [1, p_x, p_y] @ affine + U(|p - c|) @ weights.
    Raises:
        ValueError: fewer than 3 control points or mismatched shapes.
        numpy.linalg.LinAlgError: control points coincide or are all collinear.
    """
    control_points = np.asarray(control_points, dtype=np.float64)
    displacements = np.asarray(displacements, dtype=np.float64)
    if control_points.ndim != 2 or control_points.shape[1] != 2 or control_points.shape[0] < _AFFINE_TERMS:
        raise ValueError(f"control_points must be K×2 with K >= {_AFFINE_TERMS}, got {control_points.shape}")
    if displacements.shape != control_points.shape:
        raise ValueError(f"displacements must match control_points {control_points.shape}, got {displacements.shape}")
    num_points = control_points.shape[0]
    difference = control_points[:, None, :] - control_points[None, :, :]
    kernel = _kernel((difference ** 2).sum(-1))
    polynomial = np.concatenate([np.ones((num_points, 1)), control_points], axis=1)
    system = np.zeros((num_points + _AFFINE_TERMS, num_points + _AFFINE_TERMS))
    system[:num_points, :num_points] = kernel
    system[:num_points, num_points:] = polynomial
    system[num_points:, :num_points] = polynomial.T
    right_hand_side = np.zeros((num_points + _AFFINE_TERMS, 2))
    right_hand_side[:num_points] = displacements
    solution = np.linalg.solve(system, right_hand_side)
    return solution[:num_points], solution[num_points:]


def tps_backward_map(control_points: np.ndarray, displacements: np.ndarray, height: int,
                     width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel read positions of a TPS warp, in the format of `cv2.remap`.

    Args:
        control_points: K×2 (x, y) in normalised coordinates (x = column / (width - 1), y = row / (height - 1)),
            where the output takes its value from `control_points + displacements`.
        displacements: K×2 normalised displacement at each control point.
        height, width: output size in pixels.
    Returns:
        (map_x, map_y), float32 height×width each: the source pixel each output pixel reads.
    """
    weights, affine = fit_displacement_spline(control_points, displacements)
    columns = np.linspace(0.0, 1.0, width, dtype=np.float32)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)
    points = np.asarray(control_points, dtype=np.float32)
    # Squared distances to every control point, K×H×W, built from per-axis terms (float32: ~1e-4 px error).
    row_term = (rows[None, :] - points[:, 1:2]) ** 2
    column_term = (columns[None, :] - points[:, 0:1]) ** 2
    squared = row_term[:, :, None] + column_term[:, None, :]
    np.maximum(squared, np.float32(_TINY_SQUARED_DISTANCE), out=squared)
    kernel = np.log(squared)
    kernel *= squared
    kernel *= np.float32(0.5)
    field = (weights.T.astype(np.float32) @ kernel.reshape(len(points), -1)).reshape(2, height, width)
    # Linear part of the spline, then back from normalised to pixel units.
    for axis in range(2):
        field[axis] += (affine[0, axis] + affine[1, axis] * columns[None, :]
                        + affine[2, axis] * rows[:, None]).astype(np.float32)
    map_x = np.arange(width, dtype=np.float32)[None, :] + field[0] * np.float32(max(width - 1, 0))
    map_y = np.arange(height, dtype=np.float32)[:, None] + field[1] * np.float32(max(height - 1, 0))
    return map_x, map_y


def random_tps_backward_map(rng: np.random.Generator, height: int, width: int,
                            num_control_points: int = TPS_NUM_CONTROL_POINTS,
                            displacement_std: float = TPS_DISPLACEMENT_STD) -> tuple[np.ndarray, np.ndarray]:
    """A random TPS warp of a height×width frame as (map_x, map_y), float32 height×width each.

    Source points are uniform in [0, 1]²; each output point c_i + δ_i (δ ~ N(0, displacement_std²)) reads the
    source at c_i, so the spline is fitted at the displaced points with displacement -δ_i.
    """
    source_points = rng.uniform(size=(num_control_points, 2))
    offsets = rng.normal(scale=displacement_std, size=(num_control_points, 2))
    return tps_backward_map(source_points + offsets, -offsets, height, width)
