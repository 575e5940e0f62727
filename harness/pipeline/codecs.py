"""What the GPU's hardware video decoders (NVDEC) take: shared by every backend that decodes on
them (nvdec, and DALI's GPU video reader)."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.pipeline.sources import DecodedVideoSource

# What NVDEC decodes on Ampere and Hopper GPUs (Video Codec SDK support matrix), as the codec
# names PyAV reports: (min width, min height, max width, max height).
NVDEC_LIMITS: dict[str, tuple[int, int, int, int]] = {
    "h264": (48, 16, 4096, 4096),
    "hevc": (144, 144, 8192, 8192),
    "vp9": (128, 128, 8192, 8192),
    "av1": (128, 128, 8192, 8192),
}


def check_nvdec_limits(source: DecodedVideoSource) -> None:
    """Refuse, naming the file, a video whose codec or size NVDEC cannot decode."""
    for record in source.records:
        path = source.root / record["path"]
        codec = str(record.get("codec", "")).lower()
        limits = NVDEC_LIMITS.get(codec)
        if limits is None:
            raise HarnessError(
                f"{path}: NVDEC cannot decode {codec or 'this'} video (it decodes "
                f"{', '.join(NVDEC_LIMITS)}); use pipeline.backend torch for this dataset"
            )
        min_w, min_h, max_w, max_h = limits
        width, height = int(record["width"]), int(record["height"])
        if not (min_w <= width <= max_w and min_h <= height <= max_h):
            raise HarnessError(
                f"{path}: {width}x{height} is outside NVDEC's {codec} limits "
                f"({min_w}x{min_h} to {max_w}x{max_h}); use pipeline.backend torch for this dataset"
            )


def refuse_awkward_video(source: DecodedVideoSource, backend: str) -> None:
    """Refuse, naming the file, a video this backend would read wrongly: it numbers frames on
    the rate's grid (a variable-rate video's masks and frames would not match) and does not
    turn frames as a display matrix says. The torch backend reads both."""
    for record in source.records:
        if "pts" in record:
            awkward = "a variable frame rate"
        elif "rotation" in record:
            awkward = f"rotation metadata ({record['rotation']} degrees)"
        else:
            continue
        raise HarnessError(
            f"{source.root / record['path']}: backend {backend} cannot read a video with "
            f"{awkward}; use pipeline.backend torch"
        )
