"""Decode in a child process, so a decoder that crashes or hangs fails one video, not the job.

FFmpeg is native code: a hostile or broken file can segfault, abort, exhaust memory or
block inside one call, where no Python check runs. ``IsolatedDecoder`` keeps one
long-lived child process (``python -m transforms.decode_worker``) that runs
``transforms.reading.read_clips`` (clip models) or ``read_frames`` (stream and
frame-sequence models) and hands each clip or frame back: its ``uint8 [T, S, S, 3]`` or
``[S, S, 3]`` pixels through a shared memory block (an anonymous ``memfd`` both map), a
small pickled header through a pipe; the parent copies the pixels out and acknowledges,
so the child may write the next one (it decodes that one while the parent works). A
reader that stops early (a frame-sequence model takes N frames) tells the child to stop
instead of acknowledging, so the child ends that video and stays for the next.

The parent waits for the child at most ``max_decode_s`` (from the request) per video,
plus a grace for the child's own check to fire first; as in process, the time the
reader's consumer holds each item (inference) is not counted. Past it the child is
killed and the video fails with ``DecoderTimedOut``; a child that dies (a signal, an
abort, the kernel's OOM killer) fails it with ``DecoderCrashed``. Either way the next
video gets a fresh child. Errors the decoder reports itself (``UnreadableVideo``, ...)
come back as the same exceptions, so the failure rows read as they would in process.

Memory: the child holds one decoder and one clip (or frame), the shared block one, the
parent its copy: flat however long the video. ``DecoderPool`` gives each video that is
open at the same time (a stream model's lockstep batch) its own child. Cost: one more
copy of each clip each side (README "Measured here" gives the decode bench's isolated
/ in-process ratio).

Test hook: with ``VIDEO_INDEX_TEST_FAULTS=1`` in the child's environment, a URI that
contains ``__crash__`` makes the child segfault and one that contains ``__hang__``
makes it block in a native sleep; without the variable the names mean nothing.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from transforms.preprocess import FrameSpec
from transforms.reading import SampledClip, read_clips, read_frames
from transforms.sampling import ClipSampling
from transforms.video_io import DecodeLimits, DecodeTimeLimitExceeded, VideoDecodeError
from video_index.storage import is_transient

__all__ = ["IsolatedDecoder", "DecoderPool", "DecoderCrashed", "DecoderTimedOut"]

TEST_FAULTS_ENV = "VIDEO_INDEX_TEST_FAULTS"
# Seconds past max_decode_s the parent waits, so the child's own per-packet check
# (a clean DecodeLimitExceeded) fires first where it can.
_GRACE_S = 1.0
# How long a new child may take to import its modules and say it is ready.
_START_S = 120.0
_LENGTH = struct.Struct("<Q")  # bytes of the pickled header that follows
_ACK = b"A"  # parent -> child: the shared block is free again
_STOP = b"S"  # parent -> child: the block is free, and read no further in this video
CLIPS, FRAMES = "clips", "frames"  # what a request reads: read_clips or read_frames


class DecoderCrashed(VideoDecodeError):
    """The decoder process died (a signal, an abort, out of memory); transient: the next
    run retries the video (a killed worker, memory taken by others, may be the cause)."""

    transient = True


class DecoderTimedOut(DecodeTimeLimitExceeded):
    """The decoder process gave no answer within the wall-clock limit; it was killed."""


def _write_message(out, header: object) -> None:
    data = pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)) + data)
    out.flush()


class _SharedBlock:
    """An anonymous shared memory file both processes map; grown on demand."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0
        self.map: Optional[mmap.mmap] = None

    def ensure(self, size: int, grow: bool) -> None:
        if size <= self.size:
            return
        if grow:
            os.ftruncate(self.fd, size)
        if self.map is not None:
            self.map.close()
        self.map = mmap.mmap(self.fd, size)
        self.size = size

    def put(self, frames: np.ndarray) -> None:
        np.frombuffer(self.map, dtype=np.uint8, count=frames.size)[...] = frames.reshape(-1)

    def take(self, shape: tuple) -> np.ndarray:
        """A copy of the ``uint8`` array of ``shape`` at the start of the block."""
        count = int(np.prod(shape))
        return np.frombuffer(self.map, dtype=np.uint8, count=count).reshape(shape).copy()

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        os.close(self.fd)


class IsolatedDecoder:
    """``read_clips`` / ``read_frames`` of ``transforms.reading``, run in a child process.

    ``decoder.read_clips(uri, sampling, frame_spec, limits)`` is used like
    ``read_clips`` (``with ... as reader``, ``reader.info``, iterate ``SampledClip``),
    ``decoder.read_frames(uri, fps, frame_spec, limits)`` like ``read_frames`` (iterate
    ``(t, uint8 [S, S, 3])``); both then give ``num_frames``, ``duration_s``,
    ``decode_errors``, ``discontinuities`` as the in-process reader would at that
    point. One video at a time per decoder (``DecoderPool`` for more).
    Raises what the in-process reader raises, and ``DecoderCrashed`` /
    ``DecoderTimedOut`` (over ``max_decode_s`` of waiting for the child, this video). The
    child starts on first use and again after a crash, a timeout or an abandoned clip
    reader; ``close()`` ends it (it also ends by itself when the parent goes away).
    """

    def __init__(self) -> None:
        self._proc: Optional[subprocess.Popen] = None
        self._requests = None
        self._answers: Optional[int] = None
        self._block: Optional[_SharedBlock] = None

    def read_clips(
        self,
        uri: str,
        sampling: ClipSampling,
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
        **flags: bool,
    ) -> "_RemoteVideo":
        """As ``read_clips(uri, sampling, frame_spec, limits, **flags)`` (``shots``)."""
        clip_bytes = sampling.frames_per_clip * frame_spec.size * frame_spec.size * 3
        request = (CLIPS, uri, sampling, frame_spec, limits, flags)
        return _RemoteVideo(self, request, clip_bytes)

    def read_frames(
        self,
        uri: str,
        fps: float,
        frame_spec: FrameSpec,
        limits: DecodeLimits = DecodeLimits(),
    ) -> "_RemoteVideo":
        frame_bytes = frame_spec.size * frame_spec.size * 3
        return _RemoteVideo(self, (FRAMES, uri, fps, frame_spec, limits, {}), frame_bytes)

    def _start(self) -> None:
        request_r, request_w = os.pipe()
        answer_r, answer_w = os.pipe()
        self._block = _SharedBlock(os.memfd_create("video-index-clip"))
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        level = logging.getLogger("libav").getEffectiveLevel()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "transforms.decode_worker"]
            + [str(request_r), str(answer_w), str(self._block.fd), str(level)],
            pass_fds=(request_r, answer_w, self._block.fd),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(request_r)
        os.close(answer_w)
        self._requests = os.fdopen(request_w, "wb")
        self._answers = answer_r
        # The per-video clock starts once the child is ready, not during its imports.
        self._receive(time.monotonic() + _START_S, _START_S)

    def _send(self, request: tuple, clip_bytes: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        self._block.ensure(clip_bytes, grow=True)
        try:
            _write_message(self._requests, (*request, self._block.size))
        except (BrokenPipeError, OSError):
            raise self._crashed() from None

    def _ack(self, answer: bytes = _ACK) -> None:
        try:
            self._requests.write(answer)
            self._requests.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone: the next read says how

    def _frames(self, shape: tuple) -> np.ndarray:
        """A copy of the clip the child put in the shared block."""
        return self._block.take(shape)

    def _receive(self, deadline: float, limit_s: float) -> tuple:
        """The next header; raises DecoderCrashed / DecoderTimedOut."""
        (size,) = _LENGTH.unpack(self._read_exact(_LENGTH.size, deadline, limit_s))
        return pickle.loads(self._read_exact(size, deadline, limit_s))

    def _read_exact(self, size: int, deadline: float, limit_s: float) -> bytes:
        buffer = bytearray(size)
        self._read_into(memoryview(buffer), deadline, limit_s)
        return bytes(buffer)

    def _read_into(self, view: memoryview, deadline: float, limit_s: float) -> None:
        done = 0
        while done < len(view):
            remaining = deadline - time.monotonic()
            ready = remaining > 0 and select.select([self._answers], [], [], remaining)[0]
            if not ready:
                self.close()
                raise DecoderTimedOut(
                    f"decoder timed out: no answer within max_decode_s={limit_s:g} s "
                    f"(+{_GRACE_S:g} s), decoder process killed"
                )
            count = os.readv(self._answers, [view[done:]])
            if count == 0:
                raise self._crashed()
            done += count

    def _crashed(self) -> DecoderCrashed:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"killed by {name}" + (", e.g. out of memory" if -code == signal.SIGKILL else "")
        else:
            why = f"exit status {code}"
        return DecoderCrashed(f"decoder crashed ({why}); the video was not indexed")

    def close(self) -> None:
        """End the child (killed if it is still working) and free the pipes."""
        proc, self._proc = self._proc, None
        if self._requests is not None:
            try:
                self._requests.close()
            except OSError:
                pass
            self._requests = None
        if self._answers is not None:
            os.close(self._answers)
            self._answers = None
        if self._block is not None:
            self._block.close()
            self._block = None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class _RemoteVideo:
    """One video read by the child; the interface of ``read_clips`` or ``read_frames``."""

    def __init__(self, decoder, request: tuple, item_bytes: int, on_exit=None):
        self._decoder = decoder
        self._request = request
        self._kind = request[0]
        self._item_bytes = item_bytes
        self._limit_s = request[4].max_decode_s  # (kind, uri, param, frame_spec, limits, options)
        self._on_exit = on_exit  # called with the decoder once this video is done with it
        self._finished = False
        self._facts: dict = {}

    def __enter__(self) -> "_RemoteVideo":
        self._left_s = self._limit_s + _GRACE_S  # of waiting for the child, this video
        try:
            self._decoder._send(self._request, self._item_bytes)
            self.info = self._next()[1]
        except BaseException:
            self._give_back()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not self._finished:
                self._stop()
        finally:
            self._give_back()

    def _give_back(self) -> None:
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit(self._decoder)

    def _stop(self) -> None:
        """Abandoned mid-video: a frame reader tells the child to stop and waits for its
        ``done``; a clip reader (or a child that does not answer) gets a fresh child."""
        if self._kind == FRAMES:
            try:
                header = self._receive()
                if header[0] == "frame":
                    self._decoder._ack(_STOP)
                    header = self._receive()
                if header[0] in ("done", "error"):
                    self._finished = True
                    return
            except VideoDecodeError:
                pass  # crashed or timed out after the reader stopped: not this video's fault
        self._decoder.close()

    def _receive(self) -> tuple:
        """The child's next header, waiting at most what is left of the video's time."""
        started = time.monotonic()
        try:
            return self._decoder._receive(started + self._left_s, self._limit_s)
        finally:
            self._left_s -= time.monotonic() - started

    def _next(self) -> tuple:
        try:
            header = self._receive()
        except VideoDecodeError:  # crashed or timed out: the decoder is closed already
            self._finished = True
            raise
        if header[0] == "error":
            self._finished = True
            raise header[1]
        return header

    def __iter__(self) -> Iterator:
        while True:
            header = self._next()
            if header[0] == "done":
                self._facts = header[1]
                self._finished = True
                return
            pixels = self._decoder._frames(header[-1])  # every item's header ends in its shape
            self._decoder._ack()  # the block is free: the child decodes the next item
            if header[0] == "frame":
                _, t, self._facts, _ = header
                yield t, pixels
            else:
                _, index, start_s, end_s, _ = header
                yield SampledClip(index, start_s, end_s, pixels)

    def __getattr__(self, name: str):
        # num_frames, duration_s, decode_errors, discontinuities
        facts = self.__dict__.get("_facts", {})
        if name in facts:
            return facts[name]
        raise AttributeError(name)


class DecoderPool:
    """``pool.read_frames(...)`` as ``IsolatedDecoder.read_frames``, one child per video
    open at the same time (a stream model reads its batch's videos in lockstep); a
    child is reused by the next video once its reader is closed. Thread-safe."""

    def __init__(self) -> None:
        self._idle: list[IsolatedDecoder] = []
        self._lock = threading.Lock()

    def read_frames(self, *args, **kwargs) -> _RemoteVideo:
        """``IsolatedDecoder.read_frames(uri, fps, frame_spec, limits)`` in an idle child,
        or a new one."""
        with self._lock:
            decoder = self._idle.pop() if self._idle else IsolatedDecoder()
        video = decoder.read_frames(*args, **kwargs)
        video._on_exit = self._give_back
        return video

    def _give_back(self, decoder: IsolatedDecoder) -> None:
        with self._lock:
            self._idle.append(decoder)

    def close(self) -> None:
        """End the idle children (those of open readers end when the parent goes away)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for decoder in idle:
            decoder.close()


_FACTS = ("num_frames", "duration_s", "decode_errors", "discontinuities", "shots", "cues")


def _picklable(error: BaseException) -> BaseException:
    # Whether it is transient is decided here, where the error still has its
    # __cause__ (s3fs's OSError from a botocore 503), which pickling drops.
    transient = is_transient(error)
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any error that does not survive the pipe
        error = VideoDecodeError(f"{type(error).__name__}: {error}")
    if transient:
        error.transient = True  # kept by pickle (an exception's __dict__)
    return error


def _test_fault(uri: str) -> None:
    if os.environ.get(TEST_FAULTS_ENV) != "1":
        return
    if "__crash__" in uri:
        import ctypes

        ctypes.string_at(0)  # a read of address 0: SIGSEGV inside native code
    if "__hang__" in uri:
        time.sleep(24 * 3600)  # blocks in one native call (nanosleep)


def serve(request_fd: int, answer_fd: int, block_fd: int) -> None:
    """The child's loop: one request at a time until the parent closes its end."""
    requests = os.fdopen(request_fd, "rb")
    answers = os.fdopen(answer_fd, "wb")
    block = _SharedBlock(block_fd)
    _write_message(answers, ("ready",))
    while True:
        raw = requests.read(_LENGTH.size)
        if len(raw) < _LENGTH.size:
            return  # the parent is gone or done
        (size,) = _LENGTH.unpack(raw)
        kind, uri, param, frame_spec, limits, options, block_size = pickle.loads(
            requests.read(size)
        )
        block.ensure(block_size, grow=False)
        unacknowledged = False
        try:
            _test_fault(uri)
            read = read_clips if kind == CLIPS else read_frames
            opened = read(uri, param, frame_spec, limits, **options)
            with opened as reader:
                _write_message(answers, ("info", reader.info))
                for item in reader:
                    if unacknowledged:
                        answer = requests.read(1)
                        unacknowledged = False
                        if answer == _STOP:
                            break
                        if answer != _ACK:
                            return  # the parent is gone
                    if kind == CLIPS:
                        pixels = item.frames
                        header = ("clip", item.index, item.start_s, item.end_s, pixels.shape)
                    else:
                        t, pixels = item
                        header = ("frame", t, _facts(reader), pixels.shape)
                    block.put(pixels)
                    _write_message(answers, header)
                    unacknowledged = True
                facts = _facts(reader)
            if unacknowledged and requests.read(1) not in (_ACK, _STOP):
                return
            unacknowledged = False
            _write_message(answers, ("done", facts))
        except BrokenPipeError:
            return
        except Exception as error:  # noqa: BLE001 - sent back as the video's failure
            if unacknowledged and requests.read(1) not in (_ACK, _STOP):
                return
            _write_message(answers, ("error", _picklable(error)))


def _facts(reader) -> dict:
    return {name: getattr(reader, name) for name in _FACTS}


def main(argv: list[str]) -> None:
    request_fd, answer_fd, block_fd, libav_level = (int(arg) for arg in argv[:4])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("libav").setLevel(libav_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    serve(request_fd, answer_fd, block_fd)


if __name__ == "__main__":
    main(sys.argv[1:])
