"""How long `demo.media.video_decode.sample_video` takes on a 30-minute 1280×720 video, default settings.

    python -m bench.video_prep            # or: python bench/video_prep.py [--video PATH] [--repeats 3]

The first run writes the synthetic video (H.264 ultrafast, 24 fps, a keyframe every 2 s, about
0.3 Mbit/s: a moving square and a frame counter on a slowly changing background) into the temp
directory and keeps it for the next runs; that takes a few minutes on 2 cores and is reported.
Then it samples the video `--repeats` times and prints the median, the frames and their size,
what the reading cost (frames decoded, seeks) and the peak memory of the process.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.media.video import VideoSettings  # noqa: E402
from demo.media.video_decode import sample_video  # noqa: E402

WIDTH, HEIGHT, FPS, MINUTES, GOP = 1280, 720, 24, 30, 48
CACHED = Path(tempfile.gettempdir()) / "qwen-vl-chat-bench" / f"synthetic-{MINUTES}min-{WIDTH}x{HEIGHT}-{FPS}fps.mp4"


def write_synthetic(path: Path) -> float:
    """Write the test video (atomically: a half-written file is never taken as the cache). Returns seconds."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    frames = MINUTES * 60 * FPS
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.options = {"preset": "ultrafast", "crf": "30", "sc_threshold": "0"}
        luma = np.empty((HEIGHT, WIDTH), np.uint8)
        for i in range(frames):
            luma[:] = 40 + (i // FPS) % 160  # the background steps once a second
            x = (i * 7) % (WIDTH - 120)
            luma[300:420, x : x + 120] = 235  # a square crossing the picture
            for bit in range(16):  # the frame index, in 16 cells along the top
                luma[20:60, 40 + bit * 60 : 90 + bit * 60] = 235 if i >> bit & 1 else 16
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            frame.planes[0].update(luma.tobytes())  # 1280 is a multiple of the line alignment
            frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
            frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
            frame.pts = i
            out.mux(stream.encode(frame))
            if i % (FPS * 60) == 0:
                print(f"  writing: minute {i // (FPS * 60)} of {MINUTES}", flush=True)
        out.mux(stream.encode())
    partial.rename(path)
    return time.perf_counter() - started


def frame_index(image, width: int, height: int) -> int:
    """The index written along the top of a synthetic frame (cell `bit` centred at x = 65 + 60 bit, y = 40)."""
    gray = image.convert("L")
    return sum(
        1 << bit
        for bit in range(16)
        if gray.getpixel((int((65 + 60 * bit) * width / WIDTH), int(40 * height / HEIGHT))) > 127
    )


def decode_rate(path: Path, seconds: int = 10) -> float:
    """Frames per second when decoding every frame (the first `seconds` of the video)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        started, count = time.perf_counter(), 0
        for _ in container.decode(stream):
            count += 1
            if count >= seconds * FPS:
                break
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="sample this video instead of the synthetic one")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = args.video or CACHED
    if args.video is None and not CACHED.exists():
        print(f"writing {MINUTES} min of {WIDTH}×{HEIGHT} at {FPS} fps to {CACHED} ...", flush=True)
        took = write_synthetic(CACHED)
        print(f"written in {took:.0f} s ({took / 60:.1f} min)")
    size_mb = path.stat().st_size / 1e6
    print(f"video: {path} ({size_mb:.0f} MB)")

    settings = VideoSettings()
    times = []
    for run in range(args.repeats):
        started = time.perf_counter()
        video = sample_video(str(path), settings)
        times.append(time.perf_counter() - started)
        print(f"  run {run + 1}: {times[-1]:.2f} s")
    median = statistics.median(times)
    print(f"sample_video, default settings ({os.cpu_count()} cores): median {median:.2f} s of {args.repeats} runs")
    print(f"  {video.describe()}; source {video.source_wh[0]}×{video.source_wh[1]}, {video.duration:.0f} s")
    print(f"  decoded {video.decoded_frames:,} frames with {video.seeks} seeks")
    if args.video is None:
        w, h = video.frame_wh
        right = sum(frame_index(f, w, h) == round(t * FPS) for f, t in zip(video.frames, video.timestamps, strict=True))
        print(f"  frames showing the source frame their timestamp names: {right} of {len(video.frames)}")
    rate = decode_rate(path)
    every = video.duration * video.source_fps
    print(f"  decoding every frame instead: about {every / rate:.0f} s ({every:,.0f} frames at {rate:.0f} frames/s)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory of this process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
