"""Open a video on any fsspec URL and stream its frames with real timestamps.

Takes a URI (local path, ``gs://``, ``s3://``, ``https://``) and gives ``SourceInfo``
and, frame by frame, ``DecodedFrame(t, frame)``: ``t`` the presentation time in
seconds as a ``Fraction``, ``frame`` the decoder's frame, converted to RGB uint8
``[H, W, 3]`` (display orientation) only when someone asks, so frames a sampler drops
are never converted.

Why PyAV rather than ``cv2.VideoCapture``: ``VideoCapture`` only opens a path or URL
that its own FFmpeg build can reach, so a bucket object would first have to be copied
to local disk; it reports a position computed from a nominal frame rate rather than
each frame's presentation timestamp (wrong for VFR, GIF delays and edit lists); and
whether it applies the display-matrix rotation depends on the OpenCV version and
backend. PyAV reads from a Python file object, so fsspec streams the bytes (no temp
copy, nothing but the decoder's own buffers in memory); it gives the real pts and the
display matrix of every frame; and swscale converts any pixel format or bit depth to
RGB, resizing in the same pass (one scaler per reader, reused across frames; building
a new one per frame would cost as much as the resize saves).

Opening decodes the first frame, so ``info`` has the displayed size and rotation
(PyAV 18 exposes the display matrix on frames only), and a stream with nothing
decodable fails at open. The rotation is applied to the pixels: a 90-degree file comes
out upright with width and height swapped.

Robustness: a corrupt packet is counted (``decode_errors``: packets the decoder
rejects, packets the demuxer marks corrupt such as a truncated file's cut-off last
one, a demuxer error that ends the file early) and skipped; a truncated file ends
where its decodable data ends. A file with no decodable video raises a
``VideoDecodeError`` subclass with a one-line reason. ``DecodeLimits`` bound pixels
per frame (checked on the container and on every frame), duration (container metadata
and decoded timestamps) and wall-clock decode time (checked per packet).

Alpha (GIF, VP9/FFV1/PNG with alpha) is dropped, not composited: the RGB planes are
used as stored. What lies under transparent pixels is the encoder's choice: black in
the VP9 ``transparent.webm`` (FFmpeg's native VP9 decoder does not decode the alpha
layer at all), white in ``pigs_in_a_polka.gif``.

Decoder threads: ``thread_type = "AUTO"`` (frame and slice threads, FFmpeg picks the
count). FFmpeg's own error log is switched on at ERROR level once per process (PyAV
silences it by default) because it holds the useful reasons ("moov atom not found");
at open it is captured into the exception message, while decoding it goes to the
``libav.*`` Python loggers.
"""

from __future__ import annotations

import dataclasses
import time
from fractions import Fraction
from typing import Iterator, NamedTuple, Optional

import av
import av.logging
import numpy as np
from av.video.reformatter import VideoReformatter

from transforms.storage import open_input

# Bytes fsspec reads ahead per request from a bucket: large enough that a decoder's
# small reads do not each become a request, small enough to keep memory flat.
_BLOCK_SIZE = 4 * 1024 * 1024


class VideoDecodeError(Exception):
    """A video that cannot be decoded; the message is the one-line reason."""


class UnreadableVideo(VideoDecodeError):
    """Not a container PyAV can open (empty, not a video, truncated header)."""


class NoVideoStream(VideoDecodeError):
    """A container without a video stream (audio only, data)."""


class DecodeLimitExceeded(VideoDecodeError):
    """A video over one of the DecodeLimits."""


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Bounds against hostile or absurd files; each exceeded one fails the video."""

    max_pixels_per_frame: int = 8192 * 4320
    max_duration_s: float = 4 * 3600.0
    max_decode_s: float = 1800.0


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What the container and its first frame say about the video stream.

    ``width``/``height``: the displayed size of the first frame (after rotation).
    ``fps``: the stream's average frame rate (falling back to FFmpeg's base / guessed
    rate), None if unknown. ``duration_s``: the stream's (else the container's)
    duration, None if unknown; the decoded one is ``VideoReader.duration_s``.
    ``pix_fmt``: the decoded pixel format. ``rotation``: degrees counter-clockwise that
    the display matrix turns the decoded picture (FFmpeg's sign: -90 is a quarter turn
    clockwise), 0 without one.
    """

    width: int
    height: int
    fps: Optional[float]
    duration_s: Optional[float]
    codec: str
    pix_fmt: Optional[str]
    rotation: int


class DecodedFrame(NamedTuple):
    """A decoded frame, not yet converted: ``VideoReader.to_rgb(frame)`` converts it."""

    t: Fraction
    frame: av.VideoFrame


class VideoReader:
    """``with VideoReader(uri, limits) as reader``: ``reader.info``, ``reader.frames()``.

    After iterating: ``frames_decoded``, ``decode_errors``, ``first_t``, ``last_t``,
    ``duration_s`` (decoded: last - first + the last frame's duration).
    ``frames()`` can be iterated once; it starts with the frame opening peeked at.
    """

    def __init__(self, uri: str, limits: DecodeLimits = DecodeLimits()):
        self.uri = uri
        self.limits = limits
        self.frames_decoded = 0
        self.decode_errors = 0
        self.first_t: Optional[Fraction] = None
        self.display_size: Optional[tuple[int, int]] = None  # known from the first frame
        self.last_t: Optional[Fraction] = None
        self._frame_step: Optional[Fraction] = None
        self._last_gap: Optional[Fraction] = None
        self._file = None
        self._container = None
        self._decoded: Optional[Iterator[DecodedFrame]] = None
        self._peeked: Optional[DecodedFrame] = None
        self._reformatter = VideoReformatter()

    def __enter__(self) -> "VideoReader":
        # The wall-clock limit covers opening too: a hostile header can be slow.
        self._started = time.monotonic()
        self._file = open_input(self.uri, block_size=_BLOCK_SIZE)
        if av.logging.get_level() is None:
            # FFmpeg's log holds the useful reason ("moov atom not found") that the
            # exception alone does not; it is only passed on with a level set.
            av.logging.set_level(av.logging.ERROR)
        if getattr(self._file, "size", None) == 0:
            # Said up front: probing an empty .mp4 seeks before its start, which
            # surfaces as a bare OSError (EINVAL), not as an FFmpeg error.
            self.close()
            raise UnreadableVideo("empty file (0 bytes)")
        try:
            with av.logging.Capture() as log:
                self._container = av.open(self._file, mode="r", metadata_errors="ignore")
        except (av.FFmpegError, ValueError, EOFError) as error:
            self.close()
            raise UnreadableVideo(_reason(error, log)) from None
        try:
            self.info = self._open_stream()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            stream = getattr(self, "_stream", None)
            if stream is not None and stream.codec_context is not None:
                # Park the decoder's frame threads while the GIL is free (PyAV's flush
                # drops it). Freeing a codec holds the GIL and waits for its threads,
                # and a thread that is logging an error through PyAV's log callback
                # waits for the GIL: a deadlock (seen stopping raw H.264 mid-stream).
                try:
                    stream.codec_context.flush_buffers()
                except av.FFmpegError:
                    pass
            self._stream = None
            self._container.close()
            self._container = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._decoded = None
        self._peeked = None

    def _open_stream(self) -> SourceInfo:
        container = self._container
        # Cover art in an audio file is a one-frame "video" stream; it is not a video.
        videos = [
            s
            for s in container.streams.video
            if not s.disposition & av.stream.Disposition.attached_pic
        ]
        if not videos:
            kinds = sorted(
                {
                    "video (attached picture)" if s.type == "video" else s.type
                    for s in container.streams
                }
            ) or ["none"]
            raise NoVideoStream(f"no video stream (streams: {', '.join(kinds)})")
        stream = videos[0]
        stream.thread_type = "AUTO"
        self._stream = stream
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if width * height > self.limits.max_pixels_per_frame:
            raise DecodeLimitExceeded(
                f"frame {width}x{height} is over max_pixels_per_frame={self.limits.max_pixels_per_frame}"
            )
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        self._frame_step = Fraction(1) / Fraction(rate) if rate else Fraction(1, 25)
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        if duration is not None and duration > self.limits.max_duration_s:
            raise DecodeLimitExceeded(
                f"duration {duration:.0f} s is over max_duration_s={self.limits.max_duration_s:g}"
            )
        self._rotation: Optional[int] = None
        self._time_base = stream.time_base or Fraction(1, 90000)
        # The display matrix is only on decoded frames in PyAV: decode the first one.
        self._decoded = self._decode()
        self._peeked = next(self._decoded, None)
        if self._peeked is None:
            reason = "no decodable video frames"
            if self.decode_errors:
                reason += f" ({self.decode_errors} decode errors)"
            raise UnreadableVideo(reason)
        first = self._peeked.frame
        width, height = self.display_size
        return SourceInfo(
            width=width,
            height=height,
            fps=fps,
            duration_s=duration,
            codec=ctx.name,
            pix_fmt=first.format.name if first.format else None,
            rotation=self.rotation,
        )

    def frames(self) -> Iterator[DecodedFrame]:
        """Decoded frames in presentation order, with times that never go backwards.

        Timestamps follow ffmpeg's best-effort rule: the frame pts, unless pts has
        been seen going backwards more often than dts has (AVI with packed B-frames
        numbers its pts out of order), then dts; missing both, the previous time plus
        one frame.
        """
        if self._decoded is None:
            raise RuntimeError("VideoReader is not open (use it as a context manager)")
        if self._peeked is not None:
            first, self._peeked = self._peeked, None
            yield first
        yield from self._decoded

    def _decode(self) -> Iterator[DecodedFrame]:
        limits = self.limits
        last_pts = last_dts = None
        faulty_pts = faulty_dts = 0
        for packet in self._demux():
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                self.decode_errors += 1
                continue
            for frame in decoded:
                pts, dts = frame.pts, frame.dts
                if pts is not None and last_pts is not None and pts <= last_pts:
                    faulty_pts += 1
                if dts is not None and last_dts is not None and dts <= last_dts:
                    faulty_dts += 1
                last_pts = pts if pts is not None else last_pts
                last_dts = dts if dts is not None else last_dts
                stamp = (
                    pts if (pts is not None and (faulty_pts <= faulty_dts or dts is None)) else dts
                )
                if stamp is not None:
                    t = Fraction(stamp) * self._time_base
                elif self.last_t is not None:
                    t = self.last_t + self._frame_step
                else:
                    t = Fraction(0)
                if self.last_t is not None and t < self.last_t:
                    t = self.last_t  # never backwards: a late duplicate holds its place
                if self.last_t is not None and t > self.last_t:
                    self._last_gap = t - self.last_t
                if self.first_t is None:
                    self.first_t = t
                self.last_t = t
                self.frames_decoded += 1
                if frame.width * frame.height > limits.max_pixels_per_frame:
                    # The container's size can lie, and a stream can change size.
                    raise DecodeLimitExceeded(
                        f"frame {frame.width}x{frame.height} is over "
                        f"max_pixels_per_frame={limits.max_pixels_per_frame}"
                    )
                if self._rotation is None:
                    self._rotation = _rotation_of(frame)
                    self.display_size = display_size(frame)
                if t - self.first_t > limits.max_duration_s:
                    raise DecodeLimitExceeded(
                        f"decoded past max_duration_s={limits.max_duration_s:g}"
                    )
                yield DecodedFrame(t, frame)

    def _demux(self):
        """Packets of the video stream; a broken tail ends the stream, not the job."""
        packets = self._container.demux(self._stream)
        max_decode_s = self.limits.max_decode_s
        while True:
            # Per packet, not per frame: a run of undecodable packets yields no frame.
            if time.monotonic() - self._started > max_decode_s:
                raise DecodeLimitExceeded(f"decoding took over max_decode_s={max_decode_s:g}")
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError:
                # A truncated or corrupt tail: keep what was decoded, say so, and
                # drain the frames the decoder still holds (a clean end of stream
                # gets its flush packet from demux itself).
                self.decode_errors += 1
                yield _FlushPacket(self._stream)
                return
            if packet.is_corrupt:
                # E.g. the cut-off last packet of a truncated file: the demuxer's only
                # sign of the damage, as decoding it fails quietly.
                self.decode_errors += 1
            yield packet

    @property
    def rotation(self) -> int:
        return self._rotation or 0

    @property
    def duration_s(self) -> Optional[Fraction]:
        if self.first_t is None:
            return None
        # The last frame lasts as long as the gap before it (or one nominal frame).
        return self.last_t - self.first_t + (self._last_gap or self._frame_step)

    def to_rgb(
        self, frame: av.VideoFrame, width: Optional[int] = None, height: Optional[int] = None
    ) -> np.ndarray:
        """The frame as RGB uint8 ``[H, W, 3]`` in display orientation.

        ``width``/``height`` are display sizes to resize to during conversion (swscale,
        bilinear); for a frame rotated by 90 or 270 degrees the decoder's own size is
        the transpose. Any pixel format (gray, 10-bit, palette, alpha) gives RGB;
        alpha is dropped.
        """
        rotation = _rotation_of(frame)
        quarter = (round(rotation / 90) % 4) if rotation else 0
        if width is not None and height is not None and quarter % 2:
            width, height = height, width
        # One scaler per reader: swscale's setup costs about as much as a 1080p resize.
        rgb = self._reformatter.reformat(
            frame, width, height, "rgb24", interpolation="BILINEAR"
        ).to_ndarray()
        if quarter:
            # The display matrix says rotate counterclockwise by `rotation` degrees.
            rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter))
        return rgb


class _FlushPacket:
    """Stands in for the empty packet that drains the decoder at end of stream."""

    def __init__(self, stream):
        self._stream = stream

    def decode(self):
        return self._stream.codec_context.decode(None)


def _rotation_of(frame: av.VideoFrame) -> int:
    try:
        return int(round(frame.rotation or 0))
    except (AttributeError, TypeError, ValueError):
        return 0


def display_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(width, height) of a decoded frame as it is shown (after rotation)."""
    quarter = round(_rotation_of(frame) / 90) % 4
    if quarter % 2:
        return frame.height, frame.width
    return frame.width, frame.height


def _reason(error: BaseException, log=()) -> str:
    """PyAV's message, without the file name (the row has the URI), plus FFmpeg's own."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    text = text.split(": '", 1)[0].strip() or type(error).__name__
    details = [m.strip() for _, _, m in log if m and m.strip()]
    if details:
        text = f"{text} ({'; '.join(dict.fromkeys(details))})"
    return text
