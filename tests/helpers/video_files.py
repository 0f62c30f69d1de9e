"""Writes clips as the files a video dataset holds: video files (PyAV) or folders of frame images."""

import os

import numpy as np
import tensorflow as tf


def write_video(path, frames, fps=25):
    """Writes uint8 frames ``[T, H, W, 3]`` as a video file (MPEG-4 part 2, lossy) with PyAV."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}  # near-lossless
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def write_frames_folder(path, frames):
    """Writes uint8 frames as ``image_00001.png``, ... in the directory ``path`` (lossless)."""
    os.makedirs(path, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        tf.io.write_file(os.path.join(path, f"image_{index:05d}.png"), tf.io.encode_png(frame))


def write_video_folder(root, clips, labels, class_names, split, kind="avi"):
    """``root/<split>/<class>/<n>.avi`` (or ``<n>/`` frame folders with ``kind="frames"``) for every clip.

    Returns:
        The written paths, in the order of ``clips``.
    """
    paths = []
    for index, (clip, label) in enumerate(zip(clips, labels)):
        directory = os.path.join(root, split, class_names[label])
        os.makedirs(directory, exist_ok=True)
        if kind == "frames":
            path = os.path.join(directory, f"video{index:03d}")
            write_frames_folder(path, clip)
        else:
            path = os.path.join(directory, f"video{index:03d}.{kind}")
            write_video(path, clip)
        paths.append(path)
    return paths
