"""Typed records that flow between the stages.

Frames travel as ``uint8 [T, H, W, 3] RGB``; conversion to float happens at the
model input.  Times are seconds from the start of the video stream (first frame at
its real presentation time, not re-based), carried as ``fractions.Fraction`` inside
the core and written out as float.
"""

from __future__ import annotations

import errno
from typing import NamedTuple, Optional

import numpy as np

from video_index.storage import escape_name, is_transient


class VideoRef(NamedTuple):
    """One distinct video to index, as read from the manifest.

    ``version`` is what tells a changed file from an unchanged one: an mtime, an ETag
    or a generation, whatever the storage gives; None where it gives nothing.
    """

    video_id: str
    uri: str
    size: Optional[int] = None
    version: Optional[str] = None


class VideoInfo(NamedTuple):
    """What decoding learned about a video; emitted once per decoded video.

    ``width``/``height``: displayed size (stored size times the sample aspect ratio,
    then rotation). ``duration_s``/``num_frames``: the stream's true length.
    ``discontinuities``: timestamp jumps re-based (MPEG-TS/PS). ``stream_index`` /
    ``codec``: the video stream read. ``sample_aspect_ratio``: ``"num:den"`` as
    FFmpeg writes it (``"1:1"`` for square pixels).
    """

    video_id: str
    uri: str
    duration_s: float
    fps: float
    width: int
    height: int
    num_clips: int
    num_frames: int
    decode_errors: int = 0
    discontinuities: int = 0
    stream_index: int = 0
    codec: str = ""
    sample_aspect_ratio: str = "1:1"
    color_transfer: Optional[str] = None  # FFmpeg's name; smpte2084 / arib-std-b67: HDR
    # The video's shots in time order, covering it without gaps (``Shot``); empty
    # where the run does not detect shots (``--no-shots``, whole-video models).
    shots: tuple["Shot", ...] = ()
    # Technical cues found with the shots: black frames, colour bars, still pictures.
    cues: tuple["Cue", ...] = ()


class Shot(NamedTuple):
    """One shot of a video (``transforms.shots``): ``[start_s, end_s)`` seconds on the
    video's timeline; ``kind`` of the boundary that starts it (``start`` for the first,
    ``cut``, ``fade``, ``dissolve``); ``confidence`` in [0, 1]; ``thumbnail``: its
    middle frame as a small JPEG (``transforms.thumbnails``), or None."""

    index: int
    start_s: float
    end_s: float
    kind: str
    confidence: float
    thumbnail: Optional[bytes] = None


class Cue(NamedTuple):
    """A technical cue (``transforms.shots``): ``kind`` ``black`` (dark frames), ``bars``
    (colour bars) or ``still`` (a frozen picture), over ``[start_s, end_s)`` seconds.
    Not a shot, not an event: clips inside one are marked and make no event."""

    kind: str
    start_s: float
    end_s: float


class DecodeResult(NamedTuple):
    """The last word of decode on one video: its info, or why it failed.

    ``num_clips`` is how many clips decode emitted before it ended, so that a
    video is known complete once that many clip outcomes have come back, whatever
    the order, bundle or worker they arrive in.
    """

    ref: VideoRef
    num_clips: int
    info: Optional[VideoInfo] = None
    failure: Optional["Failure"] = None


class ClipKey(NamedTuple):
    """Identity of one clip: the key that RunInference carries beside the frames.

    The last clip of a video also carries the video's ``DecodeResult``
    (``decode_result``; None on every other clip), so that the end of a video travels
    the clips' own path through inference in order, with no second collection to
    merge (a merge is a materialisation on Beam's local runner).
    """

    video_id: str
    uri: str
    clip_index: int
    start_s: float
    end_s: float
    decode_result: Optional["DecodeResult"] = None
    # The clip's middle frame as a small JPEG (``transforms.thumbnails``), or None.
    thumbnail: Optional[bytes] = None


class ClipPrediction(NamedTuple):
    """A clip's logits as the model gave them: float32 [C]; and its embedding, float32
    [D] (the model's penultimate features), where the model gives one and it is wanted."""

    key: ClipKey
    logits: np.ndarray
    embedding: Optional[np.ndarray] = None


class Failure(NamedTuple):
    """A video that could not be indexed, and why. ``stage`` names the stage.

    ``transient``: the cause was not the file (``is_transient_error``), so the next
    run tries the video again; a content failure of an unchanged file is skipped.
    """

    video_id: str
    uri: str
    stage: str
    error_type: str
    message: str
    transient: bool = False

    @classmethod
    def from_exception(cls, video_id: str, uri: str, stage: str, error: BaseException) -> "Failure":
        # escape_name: an OS error names the path, which may not be UTF-8.
        message = escape_name(str(error) or repr(error))
        transient = is_transient_error(error)
        return cls(video_id, uri, stage, type(error).__name__, message[:2000], transient)


# errno values of an OSError that says "not now" rather than "not this file": s3fs
# raises a 503 as EBUSY and other 5xx as EREMOTEIO, and a pipe from the decoder
# process drops the botocore error they came from.
_TRANSIENT_ERRNOS = frozenset(
    {errno.EBUSY, errno.EREMOTEIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET,
     errno.ECONNREFUSED, errno.ECONNABORTED, errno.ENETUNREACH, errno.EHOSTUNREACH}
)  # fmt: skip


def is_transient_error(error: BaseException) -> bool:
    """Whether a video failed for a reason other than its content: a storage or network
    error that outlived the retries (``video_index.storage.is_transient``), a time limit
    or a killed decoder (exceptions whose class or instance says ``transient = True``),
    or an OSError with one of the errno values above."""
    if getattr(error, "transient", False) is True:
        return True
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        return True
    return is_transient(error)


class ClipScores(NamedTuple):
    """One classified clip's top-k, kept in place of its logits.

    A stream model gives one of these per second of video, so a whole video's result
    stays small: ``labels`` best first, ``scores`` their softmax probabilities.
    """

    clip_index: int
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    # Optional clips/ columns (video_index.schemas.clips_schema): the model's embedding
    # (float16 [D]) and the clip's thumbnail (JPEG bytes), where the run makes them.
    embedding: Optional[np.ndarray] = None
    thumbnail: Optional[bytes] = None


class VideoOutcome(NamedTuple):
    """How one video ended, whatever the model kind: the record its rows are made from.

    Either ``info`` with the clips' and the video's top-k (``labels`` / ``scores``),
    or the ``failure`` that stopped the video (then nothing else is used); rows are
    made by ``transforms.rows.outcome_rows``. The clip path's Summarise makes one from
    a video's clip predictions; a whole-video handler gives one per VideoRef.
    ``decode_ms`` is the time spent decoding it, model time excluded (0 where the
    decode stage counted it itself).
    """

    ref: VideoRef
    info: Optional[VideoInfo] = None
    clips: tuple[ClipScores, ...] = ()
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    failure: Optional[Failure] = None
    decode_ms: int = 0
