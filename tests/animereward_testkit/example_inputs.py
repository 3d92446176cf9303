"""Input files the example workflows name, made from the library's synthetic clips (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_VIDEO = "animereward_example.mp4"
EXAMPLE_START_FRAME = "start_frame.png"


def write_example_inputs(input_dir: Path, frames: int = 17, width: int = 320, height: int = 192) -> Path:
    """An mp4 clip (MPEG-4 part 2, which every PyAV build can encode) and its first frame as PNG."""
    import av
    import numpy as np
    from PIL import Image

    from animereward.synthetic_clips import make_clip

    video = input_dir / EXAMPLE_VIDEO
    if video.exists():
        return video
    clip = (make_clip(3, frames=frames, width=width, height=height).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(clip[0]).save(input_dir / EXAMPLE_START_FRAME)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return video
