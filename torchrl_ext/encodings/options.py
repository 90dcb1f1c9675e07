"""Column encoding options and the lazy registry of their codecs.

An encoding is named in a dataset's schema and described by a small frozen
option object that serialises to a JSON dict for the manifest:

>>> resolve_encoding("zstd").to_json()
{'name': 'zstd', 'chunk_rows': 16, 'level': 1, 'dictionary': False}
>>> resolve_encoding({"name": "zstd", "chunk_rows": 1, "level": 3, "dictionary": True})
Zstd(chunk_rows=1, level=3, dictionary=True)

``raw`` is the plain memmap column of the format; ``zstd`` and ``video`` store a
column as chunks of consecutive rows (see :mod:`torchrl_ext.encodings.chunk_format`).
The codec behind a name is imported only when it is used, so ``video`` needs
PyAV only for datasets that use it.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Raw",
    "Zstd",
    "Video",
    "EncodingOptions",
    "KNOWN_ENCODINGS",
    "resolve_encoding",
    "check_column",
    "load_codec",
]

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)
VIDEO_CODECS = ("h264", "av1")
VIDEO_PIX_FMTS = {"h264": ("yuv444p", "yuv420p", "gbrp"), "av1": ("yuv420p",)}
CRF_RANGE = {"h264": (0, 51), "av1": (0, 63)}
DEFAULT_PRESET = {"h264": "veryfast", "av1": "10"}
ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL = -(1 << 17), 22
MAX_CHUNK_ROWS = 1 << 20


def _positive_int(name: str, value: Any, upper: int = MAX_CHUNK_ROWS) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
        raise ValueError(f"`{name}` must be an int in [1, {upper}], got {value!r}")


@dataclass(frozen=True)
class Raw:
    """The plain column: one C-contiguous ``<leaf>.memmap`` file, no chunks."""

    name: ClassVar[str] = "raw"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass(frozen=True)
class Zstd:
    """Lossless zstandard chunks of ``chunk_rows`` consecutive rows, any dtype and shape.

    Args:
        chunk_rows: rows per chunk. 16 suits windows and frame stacks; 1 with
            ``dictionary=True`` suits uniform random sampling of single rows.
        level: zstandard compression level (negative levels are faster).
        dictionary: chunks are compressed with a trained dictionary whose bytes
            the caller stores and passes to the column writer and reader.

    >>> Zstd(chunk_rows=0)
    Traceback (most recent call last):
    ...
    ValueError: `chunk_rows` must be an int in [1, 1048576], got 0
    """

    chunk_rows: int = 16
    level: int = 1
    dictionary: bool = False
    name: ClassVar[str] = "zstd"

    def __post_init__(self) -> None:
        _positive_int("chunk_rows", self.chunk_rows)
        if (
            not isinstance(self.level, int)
            or isinstance(self.level, bool)
            or not ZSTD_MIN_LEVEL <= self.level <= ZSTD_MAX_LEVEL
        ):
            raise ValueError(
                f"`level` must be an int in [{ZSTD_MIN_LEVEL}, {ZSTD_MAX_LEVEL}], got {self.level!r}"
            )
        if not isinstance(self.dictionary, bool):
            raise ValueError(f"`dictionary` must be a bool, got {self.dictionary!r}")

    @property
    def codec_tag(self) -> str:
        return "zstd"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class Video:
    """Lossy video chunks of uint8 frames: one closed GOP of ``gop`` rows per chunk.

    Args:
        codec: ``"h264"`` (libx264) or ``"av1"`` (libsvtav1 when PyAV has it).
        crf: constant rate factor, 0..51 for h264 and 0..63 for av1 (lower is better).
        gop: rows per chunk; each chunk starts with a key frame and decodes alone.
        pix_fmt: how RGB frames are coded: ``"yuv444p"``, ``"yuv420p"`` (blurs
            thin coloured details) or ``"gbrp"`` (RGB planes coded directly by
            libx264rgb, the most faithful). None means ``"yuv444p"`` for h264
            and ``"yuv420p"``, the only one supported, for av1.
            Gray frames are always coded as luma only.
        preset: encoder speed preset, an x264 name for h264 (default
            ``"veryfast"``) or an SVT-AV1 preset ``"0"``..``"13"`` for av1
            (default ``"10"``).

    >>> Video(crf=60)
    Traceback (most recent call last):
    ...
    ValueError: `crf` must be an int in [0, 51] for codec 'h264', got 60
    """

    codec: str = "h264"
    crf: int = 18
    gop: int = 32
    pix_fmt: str | None = None
    preset: str | None = None
    name: ClassVar[str] = "video"

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"`codec` must be one of {VIDEO_CODECS}, got {self.codec!r}")
        lo, hi = CRF_RANGE[self.codec]
        if not isinstance(self.crf, int) or isinstance(self.crf, bool) or not lo <= self.crf <= hi:
            raise ValueError(
                f"`crf` must be an int in [{lo}, {hi}] for codec {self.codec!r}, got {self.crf!r}"
            )
        _positive_int("gop", self.gop, 1 << 16)
        if self.pix_fmt is None:
            object.__setattr__(self, "pix_fmt", VIDEO_PIX_FMTS[self.codec][0])
        if self.pix_fmt not in VIDEO_PIX_FMTS[self.codec]:
            raise ValueError(
                f"`pix_fmt` must be one of {VIDEO_PIX_FMTS[self.codec]} for codec "
                f"{self.codec!r}, got {self.pix_fmt!r}"
            )
        if self.preset is None:
            object.__setattr__(self, "preset", DEFAULT_PRESET[self.codec])
        if self.codec == "h264" and self.preset not in X264_PRESETS:
            raise ValueError(f"`preset` must be one of {X264_PRESETS} for h264, got {self.preset!r}")
        if self.codec == "av1" and self.preset not in {str(i) for i in range(14)}:
            raise ValueError(f"`preset` must be a string '0'..'13' for av1, got {self.preset!r}")

    @property
    def chunk_rows(self) -> int:
        return self.gop

    @property
    def codec_tag(self) -> str:
        return self.codec

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


EncodingOptions = Raw | Zstd | Video

# name -> (options class, codec module or None, pip extra or None)
_REGISTRY: dict[str, tuple[type, str | None, str | None]] = {
    "raw": (Raw, None, None),
    "zstd": (Zstd, "torchrl_ext.encodings.zstd_codec", None),
    "video": (Video, "torchrl_ext.encodings.video_codec", "video"),
}
KNOWN_ENCODINGS = tuple(_REGISTRY)


def _codec_module(name: str) -> Any:
    _, module, extra = _REGISTRY[name]
    if module is None:
        return None
    try:
        return importlib.import_module(module)
    except ImportError as err:
        hint = f"pip install torchrl-ext[{extra}]" if extra else "pip install torchrl-ext"
        raise ImportError(
            f"encoding {name!r} needs a package that is not installed ({err.name or err}); {hint}"
        ) from err


def resolve_encoding(spec: str | dict[str, Any] | EncodingOptions) -> EncodingOptions:
    """Returns the option object for a name, a JSON dict or an option object.

    Raises:
        ValueError: for an unknown name, unknown fields or invalid values.
        ImportError: when the encoding's optional package is missing.

    >>> resolve_encoding("lz4")
    Traceback (most recent call last):
    ...
    ValueError: unknown encoding 'lz4'; known encodings are ('raw', 'zstd', 'video')
    """
    if isinstance(spec, (Raw, Zstd, Video)):
        options = spec
    elif isinstance(spec, str):
        if spec not in _REGISTRY:
            raise ValueError(f"unknown encoding {spec!r}; known encodings are {KNOWN_ENCODINGS}")
        options = _REGISTRY[spec][0]()
    elif isinstance(spec, dict):
        name = spec.get("name")
        if name not in _REGISTRY:
            raise ValueError(f"unknown encoding {name!r}; known encodings are {KNOWN_ENCODINGS}")
        cls = _REGISTRY[name][0]
        fields = {k: v for k, v in spec.items() if k != "name"}
        allowed = set(cls.__dataclass_fields__) - {"name"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValueError(
                f"encoding {name!r} has no field(s) {unknown}; expected some of {sorted(allowed)}"
            )
        options = cls(**fields)
    else:
        raise TypeError(
            f"`spec` must be an encoding name, a JSON dict or an option object, got {type(spec).__name__}"
        )
    _codec_module(options.name)
    return options


def check_column(options: EncodingOptions, dtype: np.dtype | str, shape: tuple[int, ...]) -> None:
    """Raises ValueError when ``options`` cannot encode rows of ``dtype`` and per-row ``shape``.

    >>> check_column(Zstd(), "float32", ())
    >>> check_column(Video(), "float32", (84, 84))
    Traceback (most recent call last):
    ...
    ValueError: encoding 'video' needs uint8 frames, got dtype float32; use 'zstd' for this column
    """
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if dtype.hasobject or dtype.itemsize == 0:
        raise ValueError(f"encoding {options.name!r} needs a fixed-size dtype, got {dtype}")
    if not isinstance(options, Video):
        return
    if dtype != np.uint8:
        raise ValueError(
            f"encoding 'video' needs uint8 frames, got dtype {dtype}; use 'zstd' for this column"
        )
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3))) or min(shape[:2], default=0) < 1:
        raise ValueError(
            f"encoding 'video' needs frames of shape (H, W), (H, W, 1) or (H, W, 3), got {shape}; "
            "use 'zstd' for this column"
        )
    gray = len(shape) == 2 or shape[2] == 1
    if (options.codec == "av1" or (options.pix_fmt == "yuv420p" and not gray)) and (
        shape[0] % 2 or shape[1] % 2
    ):
        raise ValueError(
            f"codec {options.codec!r} with pix_fmt {options.pix_fmt!r} needs an even frame "
            f"height and width, got {shape[:2]}; use pix_fmt 'yuv444p' or crop the frames"
        )


def load_codec(
    options: EncodingOptions, dtype: np.dtype | str, shape: tuple[int, ...], dictionary: bytes | None = None
) -> Any:
    """Returns the codec object (``encode(rows) -> bytes``, ``decode(payload, n, stop) -> rows``).

    Raises:
        ValueError: when the column does not fit the encoding, or for ``raw``
            which has no chunks.
    """
    options = resolve_encoding(options)
    if isinstance(options, Raw):
        raise ValueError("encoding 'raw' has no codec; it is a plain memmap column")
    check_column(options, dtype, shape)
    return _codec_module(options.name).make_codec(options, np.dtype(dtype), tuple(shape), dictionary)
