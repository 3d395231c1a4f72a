"""Framing, overlap-add, STFT and inverse STFT in MLX.

Layouts follow ``torch.stft``/``librosa.stft``: a signal is ``[..., T]`` (any number of leading batch
dimensions; the sample rate does not enter these functions) and its STFT is complex64
``[..., n_fft // 2 + 1, n_frames]``. Framing uses a strided view (``mx.as_strided``) and the real FFT
``mx.fft.rfft`` over the last axis, so the whole transform is a handful of MLX ops.
"""

from __future__ import annotations

import math

import mlx.core as mx

from dsp.windows import get_window

PAD_MODES = ("reflect", "constant", "edge")


def frame(x: mx.array, frame_length: int, hop_length: int) -> mx.array:
    """Overlapping frames of the last axis: ``[..., T]`` → ``[..., n_frames, frame_length]``.

    ``n_frames = 1 + (T - frame_length) // hop_length``; trailing samples that do not fill a frame are
    dropped (pad first to keep them). The result is a strided view materialised lazily by MLX.
    """
    if frame_length <= 0 or hop_length <= 0:
        raise ValueError(f"frame_length and hop_length must be positive, got {frame_length}, {hop_length}")
    n_samples = x.shape[-1]
    if n_samples < frame_length:
        raise ValueError(f"signal of {n_samples} samples is shorter than one frame ({frame_length})")
    n_frames = 1 + (n_samples - frame_length) // hop_length
    lead = x.shape[:-1]
    flat = x.reshape(-1, n_samples)
    # as_strided addresses the row-contiguous layout of its input (MLX copies a non-contiguous one first).
    frames = mx.as_strided(
        flat, shape=(flat.shape[0], n_frames, frame_length), strides=(n_samples, hop_length, 1)
    )
    return frames.reshape(*lead, n_frames, frame_length)


def overlap_add(frames: mx.array, hop_length: int) -> mx.array:
    """Sum overlapping frames: ``[..., n_frames, L]`` → ``[..., (n_frames - 1) * hop_length + L]``.

    Frame ``i`` lands at samples ``[i * hop_length, i * hop_length + L)``. Each frame is cut into
    ``ceil(L / hop)`` hop-sized blocks; block ``r`` of frame ``i`` lands in output block ``i + r``, so the
    sum is ``ceil(L / hop)`` shifted adds of whole arrays (no scatter).
    """
    if hop_length <= 0:
        raise ValueError(f"hop_length must be positive, got {hop_length}")
    *lead, n_frames, length = frames.shape
    n_blocks = math.ceil(length / hop_length)
    pad_tail = n_blocks * hop_length - length
    no_pad = [(0, 0)] * len(lead)
    if pad_tail:
        frames = mx.pad(frames, [*no_pad, (0, 0), (0, pad_tail)])
    blocks = frames.reshape(*lead, n_frames, n_blocks, hop_length)
    out = None
    for r in range(n_blocks):
        shifted = mx.pad(blocks[..., r, :], [*no_pad, (r, n_blocks - 1 - r), (0, 0)])
        out = shifted if out is None else out + shifted
    assert out is not None
    out = out.reshape(*lead, (n_frames + n_blocks - 1) * hop_length)
    return out[..., : (n_frames - 1) * hop_length + length]


def _analysis_window(window: str | mx.array | None, win_length: int, n_fft: int) -> mx.array:
    """The window as float32 ``[n_fft]``: built by name (periodic) or given; centred and zero-padded."""
    if window is None:
        win = mx.ones((win_length,), dtype=mx.float32)
    elif isinstance(window, str):
        win = get_window(window, win_length, periodic=True)
    else:
        win = window.astype(mx.float32)
    if win.ndim != 1 or win.shape[0] != win_length:
        raise ValueError(f"window must have shape [{win_length}], got {tuple(win.shape)}")
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} exceeds n_fft {n_fft}")
    left = (n_fft - win_length) // 2
    if left or win_length != n_fft:
        win = mx.pad(win, [(left, n_fft - win_length - left)])
    return win


def _pad_signal(x: mx.array, pad: int, mode: str) -> mx.array:
    if mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {mode!r}")
    if mode == "reflect" and x.shape[-1] <= pad:
        raise ValueError(f"reflect padding of {pad} needs more than {pad} samples, got {x.shape[-1]}")
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    return mx.pad(x, widths, mode=mode)  # type: ignore[arg-type]


def stft(
    x: mx.array,
    n_fft: int,
    hop_length: int | None = None,
    window: str | mx.array | None = "hann",
    *,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool = False,
) -> mx.array:
    """Short-time Fourier transform of ``x`` ``[..., T]`` (float) → complex64 ``[..., n_fft//2 + 1, n_frames]``.

    ``hop_length`` defaults to ``n_fft // 4``, ``win_length`` to ``n_fft``. A named window is periodic;
    a shorter window is centred in the ``n_fft`` frame (as torch and librosa do). With ``center=True``
    the signal is padded by ``n_fft // 2`` on both sides using ``pad_mode`` ("reflect" like torch's
    default, "constant" like librosa's), so frame ``t`` is centred on sample ``t * hop_length`` and
    ``n_frames = 1 + T // hop_length``. ``normalized`` scales by ``n_fft ** -0.5`` (torch's meaning).
    """
    hop = hop_length if hop_length is not None else n_fft // 4
    win = _analysis_window(window, win_length or n_fft, n_fft)
    x = x.astype(mx.float32)
    if center:
        x = _pad_signal(x, n_fft // 2, pad_mode)
    frames = frame(x, n_fft, hop) * win
    spec = mx.fft.rfft(frames, axis=-1)  # [..., n_frames, n_freq]
    if normalized:
        spec = spec * (n_fft**-0.5)
    return mx.swapaxes(spec, -1, -2)


def istft(
    spec: mx.array,
    hop_length: int | None = None,
    window: str | mx.array | None = "hann",
    *,
    n_fft: int | None = None,
    win_length: int | None = None,
    center: bool = True,
    length: int | None = None,
    normalized: bool = False,
) -> mx.array:
    """Inverse STFT: complex ``[..., n_fft//2 + 1, n_frames]`` → float32 ``[..., T]``.

    Weighted overlap-add with the synthesis window, divided by the summed squared window (positions where
    that envelope is ≤ 1e-11 are left undivided). ``center`` removes the ``n_fft // 2`` padding that
    :func:`stft` added. ``length`` trims or zero-pads the output to exactly that many samples; without it,
    ``T = (n_frames - 1) * hop_length`` when centred (``+ n_fft`` otherwise). Arguments mean what they
    mean in :func:`stft`; ``n_fft`` defaults to ``2 * (n_freq - 1)``.
    """
    n_freq, n_frames = spec.shape[-2], spec.shape[-1]
    n_fft = n_fft if n_fft is not None else 2 * (n_freq - 1)
    if n_fft // 2 + 1 != n_freq:
        raise ValueError(f"n_fft {n_fft} does not match {n_freq} frequency bins")
    hop = hop_length if hop_length is not None else n_fft // 4
    win = _analysis_window(window, win_length or n_fft, n_fft)
    if normalized:
        spec = spec * (n_fft**0.5)
    frames = mx.fft.irfft(mx.swapaxes(spec, -1, -2), n=n_fft, axis=-1) * win  # [..., n_frames, n_fft]
    y = overlap_add(frames, hop)
    envelope = overlap_add(mx.broadcast_to(win * win, (n_frames, n_fft)), hop)
    y = mx.where(envelope > 1e-11, y / mx.maximum(envelope, 1e-11), y)
    start = n_fft // 2 if center else 0
    if length is None:
        stop = y.shape[-1] - (n_fft // 2 if center else 0)
        return y[..., start:stop]
    y = y[..., start : start + length]
    if y.shape[-1] < length:
        y = mx.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
    return y
