"""Videos whose class exists only in motion: scikit-learn digits drifting in one of four directions.

Each clip shows one 8x8 digit (any of the ten, upscaled by an integer factor)
moving one pixel per frame right, left, down or up across a black canvas that
wraps around at its edges. The start position is uniform over the canvas, so
every frame of every clip is a uniformly placed random digit whatever the
class: no single frame tells the direction (a classifier on single frames is
at chance), only the motion does.
"""

import numpy as np
from sklearn.datasets import load_digits

DIRECTIONS = ("right", "left", "down", "up")
_STEPS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def moving_digits(count, frames=16, canvas=32, digit_scale=1, seed=0):
    """Generates moving-digit clips and their direction labels.

    Args:
        count: number of clips.
        frames: frames per clip.
        canvas: side of the square frames.
        digit_scale: integer upscaling of the 8x8 digits.
        seed: random seed.

    Returns:
        ``(clips, labels)``: uint8 ``[count, frames, canvas, canvas, 3]`` and
        int32 ``[count]`` indices into ``DIRECTIONS``.
    """
    rng = np.random.default_rng(seed)
    digits = load_digits().images  # [1797, 8, 8], values 0..16
    side = 8 * digit_scale
    if side > canvas:
        raise ValueError(f"A {side}-pixel digit does not fit a {canvas}-pixel canvas.")
    clips = np.zeros((count, frames, canvas, canvas, 3), np.uint8)
    labels = rng.integers(0, len(DIRECTIONS), count).astype(np.int32)
    for index, label in enumerate(labels):
        digit = np.kron(digits[rng.integers(len(digits))], np.ones((digit_scale, digit_scale)))
        placed = np.zeros((canvas, canvas, 1), np.uint8)
        placed[:side, :side, 0] = (digit * (255.0 / 16.0)).astype(np.uint8)
        row, col = rng.integers(0, canvas, 2)
        step_row, step_col = _STEPS[DIRECTIONS[label]]
        for frame in range(frames):
            clips[index, frame] = np.roll(placed, (row + step_row * frame, col + step_col * frame), axis=(0, 1))
    return clips, labels
