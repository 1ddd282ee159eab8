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

from transforms.hdr import is_hdr, tone_map_to_sdr, transfer_name
from video_index.storage import open_input

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


class DecodeTimeLimitExceeded(DecodeLimitExceeded):
    """Decoding took longer than ``max_decode_s``: a fact of this machine's load as much as
    of the video, so the failure is transient (retried by the next run)."""

    transient = True


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Bounds against hostile or absurd files; each exceeded one fails the video."""

    max_pixels_per_frame: int = 8192 * 4320
    max_duration_s: float = 4 * 3600.0
    # Seconds spent opening and decoding one video (wall clock, the time its reader's
    # consumer holds each frame left out); held in native calls too where the decoder
    # runs in a child process (transforms.decode_worker).
    max_decode_s: float = 1800.0
    # ... and at most max_decode_ratio seconds per second of video decoded so far, once
    # past min_decode_s: a worker's time is bounded by the video's own length (a tiny
    # GIF with a huge canvas and thousands of frames fails in minutes, not half an hour).
    max_decode_ratio: float = 10.0
    min_decode_s: float = 120.0


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What the container and its first frame say about the video stream.

    ``width``/``height``: the displayed size of the first frame (after rotation).
    ``fps``: the stream's average frame rate (falling back to FFmpeg's base / guessed
    rate), None if unknown. ``duration_s``: the stream's (else the container's)
    duration, None if unknown; the decoded one is ``VideoReader.duration_s``.
    ``pix_fmt``: the decoded pixel format. ``rotation``: degrees counter-clockwise that
    the display matrix turns the decoded picture (FFmpeg's sign: -90 is a quarter turn
    clockwise), 0 without one. ``stream_index``: the container's index of the video
    stream read (see ``best_video_stream``). ``sample_aspect_ratio``: the width of a
    stored pixel over its height as shown (FFmpeg's guess from the container, else the
    codec; 1 when neither says), so ``width`` is the stored width times it, rounded
    (before rotation). ``ts_discont``: the format declares timestamp discontinuities
    (MPEG-TS/PS), which the reader then re-bases as FFmpeg does. ``color_transfer``:
    FFmpeg's name of the first frame's transfer (``smpte2084``, ``arib-std-b67``:
    HDR, tone-mapped by ``to_rgb``; ``bt709``, ...), None where the file says none.
    """

    width: int
    height: int
    fps: Optional[float]
    duration_s: Optional[float]
    codec: str
    pix_fmt: Optional[str]
    rotation: int
    stream_index: int = 0
    sample_aspect_ratio: Fraction = Fraction(1)
    ts_discont: bool = False
    color_transfer: Optional[str] = None


def stream_facts(info: SourceInfo) -> dict:
    """The ``videos/`` columns that say which stream was read and its pixel shape."""
    sar = getattr(info, "sample_aspect_ratio", None) or Fraction(1)
    return {
        "stream_index": int(getattr(info, "stream_index", 0) or 0),
        "codec": str(getattr(info, "codec", "") or ""),
        "sample_aspect_ratio": f"{sar.numerator}:{sar.denominator}",
        "color_transfer": getattr(info, "color_transfer", None),
    }


class DecodedFrame(NamedTuple):
    """A decoded frame, not yet converted: ``VideoReader.to_rgb(frame)`` converts it."""

    t: Fraction
    frame: av.VideoFrame


class VideoReader:
    """``with VideoReader(uri, limits) as reader``: ``reader.info``, ``reader.frames()``.

    After iterating: ``frames_decoded``, ``decode_errors``, ``discontinuities``,
    ``first_t``, ``last_t``, ``duration_s`` (decoded: last - first + the last frame's
    duration). ``ended`` says the stream was read to its end.
    ``frames()`` can be iterated once; it starts with the frame opening peeked at.
    """

    def __init__(self, uri: str, limits: DecodeLimits = DecodeLimits()):
        self.uri = uri
        self.limits = limits
        self.frames_decoded = 0
        self.decode_errors = 0
        self.ended = False
        self._sar = Fraction(1)
        self._timeline: Optional[_Timeline] = None
        # pts of the packets before the first keyframe packet (None once past it).
        self._leading_pts: Optional[list] = []
        self._leading: list = []  # those packets, until the first picture says which were dropped
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
        stream = best_video_stream(container, self.uri)
        if stream is None:
            kinds = sorted(
                {
                    "video (attached picture)" if s.type == "video" else s.type
                    for s in container.streams
                }
            ) or ["none"]
            raise NoVideoStream(f"no video stream (streams: {', '.join(kinds)})")
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
        # max_duration_s is judged by the decoded timestamps (frames()), not by this
        # header value: a Matroska Segment Duration or an MP4 mvhd can say anything.
        self._rotation: Optional[int] = None
        self._time_base = stream.time_base or Fraction(1, 90000)
        self._timeline = _Timeline(container, self._time_base, self._frame_step)
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
            stream_index=stream.index,
            sample_aspect_ratio=self._sar,
            ts_discont=self._timeline.discont,
            color_transfer=transfer_name(first.color_trc),
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
                if self._leading_pts and self._leading_pts[-1] == packet.pts:
                    self._leading_pts.pop()  # counted here, not again as a leading drop
                continue
            for frame in decoded:
                pts, dts = frame.pts, frame.dts
                if not self.frames_decoded:
                    self._count_leading_drops(pts if pts is not None else dts)
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
                    self._sar = _sample_aspect_ratio(self._stream)
                    self.display_size = self.display_size_of(frame)
                if t - self.first_t > limits.max_duration_s:
                    raise DecodeLimitExceeded(
                        f"decoded past max_duration_s={limits.max_duration_s:g}"
                    )
                handed = time.monotonic()
                yield DecodedFrame(t, frame)
                # max_decode_s counts decoding, not what the reader's consumer does with
                # the frame (a stream model's inference between frames).
                self._started += time.monotonic() - handed

    def _demux(self):
        """Packets of the video stream; a broken tail ends the stream, not the job."""
        packets = self._container.demux(self._stream)
        max_decode_s = self.limits.max_decode_s
        while True:
            # Per packet, not per frame: a run of undecodable packets yields no frame.
            elapsed = time.monotonic() - self._started
            if elapsed > max_decode_s:
                raise DecodeTimeLimitExceeded(
                    f"decoding took over max_decode_s={max_decode_s:g}"
                )
            if elapsed > self.limits.min_decode_s:
                decoded_s = float(self.last_t - self.first_t) if self.frames_decoded else 0.0
                budget = max(self.limits.min_decode_s, self.limits.max_decode_ratio * decoded_s)
                if elapsed > budget:
                    raise DecodeTimeLimitExceeded(
                        f"decoding took {elapsed:.0f} s for {decoded_s:.1f} s of video, over "
                        f"max_decode_ratio={self.limits.max_decode_ratio:g} "
                        f"(after min_decode_s={self.limits.min_decode_s:g})"
                    )
            try:
                packet = next(packets)
            except StopIteration:
                self.ended = True
                if not self.frames_decoded:
                    self._count_leading_drops(None, pictured=False)
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
            if packet.size:
                self._timeline.rebase(packet)
                if self._leading_pts is not None:
                    if packet.is_keyframe:
                        self._leading, self._leading_pts = self._leading_pts, None
                    else:
                        self._leading_pts.append(packet.pts)
            yield packet

    def _count_leading_drops(self, first_pts: Optional[int], pictured: bool = True) -> None:
        """Count the packets before the first keyframe that gave no picture.

        A stream cut mid-GOP (a transport stream recorded from the middle of a
        broadcast) starts with packets that refer to pictures it does not hold; FFmpeg
        drops them without an error. They are those earlier than the first picture
        (all of them when no picture came; none can be told apart when the first
        picture has no timestamp).
        """
        leading = self._leading if self._leading_pts is None else self._leading_pts
        self._leading, self._leading_pts = [], None
        if not pictured:
            self.decode_errors += len(leading)
        elif first_pts is not None:
            self.decode_errors += sum(1 for pts in leading if pts is not None and pts < first_pts)

    @property
    def discontinuities(self) -> int:
        """Timestamp jumps re-based so far (formats that declare them only)."""
        return self._timeline.discontinuities if self._timeline else 0

    @property
    def rotation(self) -> int:
        return self._rotation or 0

    @property
    def duration_s(self) -> Optional[Fraction]:
        if self.first_t is None:
            return None
        # The last frame lasts as long as the gap before it (or one nominal frame).
        return self.last_t - self.first_t + (self._last_gap or self._frame_step)

    def display_size_of(self, frame: av.VideoFrame) -> tuple[int, int]:
        """(width, height) of a decoded frame as shown: stored size times the sample
        aspect ratio (the width scaled), then rotated."""
        return display_size(frame, self._sar)

    def to_rgb(
        self, frame: av.VideoFrame, width: Optional[int] = None, height: Optional[int] = None
    ) -> np.ndarray:
        """The frame as RGB uint8 ``[H, W, 3]`` as shown: un-squeezed, upright.

        ``width``/``height`` are display sizes to resize to during conversion (swscale,
        bilinear); without them the displayed size (``display_size_of``): pixels that
        are not square are resampled to square ones, as a player shows them. For a
        frame rotated by 90 or 270 degrees the decoder's own size is the transpose.
        Any pixel format (gray, 10-bit, palette, alpha) gives RGB; alpha is dropped.
        HDR (PQ or HLG transfer) is converted to 16-bit R'G'B' and tone-mapped to SDR
        (``transforms.hdr``), so the model sees what an SDR picture of it shows.
        """
        rotation = _rotation_of(frame)
        quarter = (round(rotation / 90) % 4) if rotation else 0
        if (width is None or height is None) and self._sar != 1:
            width, height = self.display_size_of(frame)
        if width is not None and height is not None and quarter % 2:
            width, height = height, width
        # One scaler per reader: swscale's setup costs about as much as a 1080p resize.
        hdr = is_hdr(frame.color_trc)
        rgb = self._reformatter.reformat(
            frame, width, height, "rgb48le" if hdr else "rgb24", interpolation="BILINEAR"
        ).to_ndarray()
        if hdr:
            rgb = tone_map_to_sdr(rgb, frame.color_trc)
        if quarter:
            # The display matrix says rotate counterclockwise by `rotation` degrees.
            rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter))
        return rgb


class StreamLength(NamedTuple):
    """A video stream's length from its packets (demuxed, not decoded).

    ``num_frames``: the stream's packets (one picture each for video codecs in the
    containers FFmpeg reads; ``ffprobe -count_packets``). ``duration_s``: from the
    earliest presentation time to the end of the latest packet (pts + duration),
    discontinuities re-based as in decoding.
    """

    num_frames: int
    duration_s: Fraction


def measure_length(uri: str, limits: DecodeLimits = DecodeLimits()) -> Optional[StreamLength]:
    """The true length of ``uri``'s video stream, read from packet timestamps.

    Headers can be short, long or missing; the packets are what plays. Demuxing reads
    the file's bytes but decodes nothing (docs/performance.md gives the cost
    against a decode). None when the packets carry no timestamps. Raises
    ``VideoDecodeError`` subclasses as ``VideoReader`` does.
    """
    started = time.monotonic()
    with open_input(uri, block_size=_BLOCK_SIZE) as file:
        try:
            container = av.open(file, mode="r", metadata_errors="ignore")
        except (av.FFmpegError, ValueError, EOFError) as error:
            raise UnreadableVideo(_reason(error)) from None
        with container:
            stream = best_video_stream(container, uri)
            if stream is None:
                raise NoVideoStream("no video stream")
            time_base = stream.time_base or Fraction(1, 90000)
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            step = Fraction(1) / Fraction(rate) if rate else Fraction(1, 25)
            timeline = _Timeline(container, time_base, step)
            count, first, end = 0, None, None
            packets = container.demux(stream)
            while True:
                if time.monotonic() - started > limits.max_decode_s:
                    raise DecodeTimeLimitExceeded(
                        f"reading took over max_decode_s={limits.max_decode_s:g}"
                    )
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError:
                    break  # a broken tail: what came before is the stream
                if not packet.size:
                    continue
                timeline.rebase(packet)
                count += 1
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None:
                    continue
                first = pts if first is None else min(first, pts)
                last_end = pts + (packet.duration or 0)
                end = last_end if end is None else max(end, last_end)
    if first is None:
        return None
    return StreamLength(count, Fraction(end - first) * time_base)


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


def display_size(
    frame: av.VideoFrame, sample_aspect_ratio: Fraction = Fraction(1)
) -> tuple[int, int]:
    """(width, height) of a decoded frame as it is shown.

    The stored width times ``sample_aspect_ratio`` (rounded, at least 1), then the
    display matrix's rotation (a quarter turn swaps the two).
    """
    width = frame.width
    if sample_aspect_ratio != 1:
        width = max(1, round(width * sample_aspect_ratio))
    quarter = round(_rotation_of(frame) / 90) % 4
    if quarter % 2:
        return frame.height, width
    return width, frame.height


def _sample_aspect_ratio(stream) -> Fraction:
    """FFmpeg's guess (``av_guess_sample_aspect_ratio``: the container's, else the
    codec's); 1 where neither gives a valid ratio."""
    try:
        sar = stream.sample_aspect_ratio
    except (AttributeError, ValueError):
        sar = None
    if not sar or sar <= 0:
        return Fraction(1)
    return Fraction(sar.numerator, sar.denominator)


def best_video_stream(
    container, uri: Optional[str] = None
) -> Optional[av.video.stream.VideoStream]:
    """The video stream a player shows, or None when the file has none.

    Never an attached picture (cover art); then, in order: a moving stream before a
    one-frame still (a poster or thumbnail track), the default disposition before
    others, then FFmpeg's own choice (``av_find_best_stream``: not an impaired-viewer
    track, more frames probed, higher bit rate), then the lowest index. A still is
    known from the header (one frame, or one frame's duration); where several video
    streams leave that unknown (Matroska keeps no counts) and ``uri`` is given, from
    the packets at the start of the file (a second, short read).
    """
    videos = [
        s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
    ]
    if not videos:
        return None
    stills = {s.index for s in videos if _is_still(s)}
    unknown = [s for s in videos if s.index not in stills and not s.frames]
    if len(videos) > 1 and unknown and uri is not None:
        stills |= _stills_by_packets(uri, {s.index for s in videos})
    try:
        ffmpeg_best = container.streams.best("video")
    except (av.FFmpegError, ValueError):
        ffmpeg_best = None

    def rank(stream) -> tuple:
        default = bool(stream.disposition & av.stream.Disposition.default)
        best = ffmpeg_best is not None and stream.index == ffmpeg_best.index
        return (stream.index not in stills, default, best, -stream.index)

    return max(videos, key=rank)


# Packets read from the start of a file to tell a still from a moving stream.
_STILL_PROBE_PACKETS = 500


def _stills_by_packets(uri: str, indexes: set[int]) -> set[int]:
    """Of the streams ``indexes``, those with at most one packet while another has more."""
    counts = dict.fromkeys(indexes, 0)
    try:
        with open_input(uri, block_size=_BLOCK_SIZE) as file, av.open(
            file, mode="r", metadata_errors="ignore"
        ) as container:
            for read, packet in enumerate(container.demux()):
                if packet.size and packet.stream.index in counts:
                    counts[packet.stream.index] += 1
                if read >= _STILL_PROBE_PACKETS or min(counts.values()) >= 2:
                    break
    except (av.FFmpegError, OSError, ValueError, EOFError):
        return set()  # the decode that follows reports what is wrong
    if max(counts.values()) < 2:
        return set()
    return {index for index, count in counts.items() if count <= 1}


def _is_still(stream) -> bool:
    """A stream that holds one picture: one frame in the header, or one frame's length."""
    if stream.frames == 1:
        return True
    rate = stream.average_rate or stream.guessed_rate
    if stream.frames == 0 and stream.duration and stream.time_base and rate:
        return stream.duration * stream.time_base * rate <= 1
    return False


# FFmpeg's thresholds for a timestamp discontinuity (fftools: dts_delta_threshold 10 s;
# a jump back by more than 0.1 s).
_DISCONT_JUMP_S = Fraction(10)
_DISCONT_BACK_S = Fraction(1, 10)


class _Timeline:
    """Re-bases packet timestamps across discontinuities, as ``ffmpeg`` does.

    Only for formats that declare discontinuities (``AVFMT_TS_DISCONT``: MPEG-TS and
    -PS; recordings appended, a recorder restarting): when a packet's dts jumps from
    the one predicted (the last dts plus the last packet's duration) by more than
    10 s either way, or falls more than 0.1 s behind the last, the offset is moved so
    it continues from the prediction. Other formats keep their timestamps.
    """

    def __init__(self, container, time_base: Fraction, frame_step: Fraction):
        flags = container.format.flags if container.format is not None else 0
        self.discont = bool(flags & av.format.Flags.ts_discont.value)
        self.discontinuities = 0
        self._tb = time_base
        self._step = max(1, round(frame_step / time_base))
        self._offset = 0
        self._last_dts: Optional[int] = None
        self._next_dts: Optional[int] = None

    def rebase(self, packet) -> None:
        if not self.discont:
            return
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is None:
            return
        dts += self._offset
        if self._next_dts is not None:
            delta = dts - self._next_dts
            if (
                abs(delta) * self._tb > _DISCONT_JUMP_S
                or (dts - self._last_dts) * self._tb < -_DISCONT_BACK_S
            ):
                self._offset -= delta
                dts -= delta
                self.discontinuities += 1
        if self._offset:
            if packet.pts is not None:
                packet.pts += self._offset
            if packet.dts is not None:
                packet.dts += self._offset
        self._last_dts = dts
        self._next_dts = dts + (packet.duration or self._step)


def _reason(error: BaseException, log=()) -> str:
    """PyAV's message, without the file name (the row has the URI), plus FFmpeg's own."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    text = text.split(": '", 1)[0].strip() or type(error).__name__
    details = [m.strip() for _, _, m in log if m and m.strip()]
    if details:
        text = f"{text} ({'; '.join(dict.fromkeys(details))})"
    return text
