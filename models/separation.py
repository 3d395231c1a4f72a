"""Long inputs for separation networks, outside the networks: demucs `apply.py`'s method, on the worker.

A family builds `SeparationNetwork`s (a forward pass over fixed-length segments, `models/tasks.py`);
`SegmentedSeparator` turns them into a `Separator` that takes a whole recording:

- **Segments.** The input is cut into segments of `network.segment` samples every `stride = (1 − overlap) ·
  segment` samples. A segment shorter than `segment` (the last ones) is padded *around* its centre with the
  recording's own neighbouring samples where there are any and zeros beyond, the network runs on the full
  segment, and the centre is kept (demucs' `TensorChunk.padded` + `center_trim`).
- **Transitions.** Segment outputs are summed with a triangular weight peaking mid-segment (demucs'
  `transition_power` = 1) and divided by the summed weights, so neighbours cross-fade linearly.
- **Shifts** (`SeparateOptions.shifts` = n > 0): the recording is padded by half a second each side and
  separated n times from random offsets in [0, 0.5 s], the results averaged (demucs' shift trick; offsets
  drawn with `random.Random(seed)`, in demucs' order).
- **Bags**: several networks with a [networks × sources] weight matrix; each stem is the weighted mean of the
  networks' estimates (`htdemucs_ft`: each network speaks for one source).
- **Batching and memory.** Segments go to the worker `max_batch` at a time as `Batched` requests keyed by
  the network, so segments of concurrent jobs on the same model share forward passes; only that batch's
  inputs and outputs exist at once beside the output buffers (the wanted stems, float32), so memory does
  not grow with the recording beyond the result itself. Progress is yielded after every batch.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from models.batching import Batched
from models.errors import InvalidRequest
from models.tasks import SeparateOptions, SeparationNetwork, SeparationProgress

MAX_SHIFT_SECONDS = 0.5  # demucs: shifts are drawn in [0, 0.5 s]


def transition_weight(segment: int) -> np.ndarray:
    """demucs' triangle: 1 … segment/2 then back down, normalised to a peak of 1 (float32 [segment])."""
    half = segment // 2
    w = np.concatenate([np.arange(1, half + 1), np.arange(segment - half, 0, -1)]).astype(np.float32)
    return w / w.max()


def padded_segment(audio: np.ndarray, offset: int, length: int, target: int) -> np.ndarray:
    """`audio[:, offset:offset + length]` centred in `target` samples of context: the recording's own samples
    where it has them, zeros beyond its ends (demucs' `TensorChunk.padded`)."""
    total = audio.shape[-1]
    start = offset - (target - length) // 2
    end = start + target
    lo, hi = max(0, start), min(total, end)
    out = np.zeros((audio.shape[0], target), np.float32)
    if hi > lo:
        out[:, lo - start : hi - start] = audio[:, lo:hi]
    return out


def _network_batch(network: SeparationNetwork) -> Any:
    """The worker's batch function for one network: [C, segment] arrays → [S, C, segment] arrays."""

    def run(segments: list[np.ndarray]) -> list[np.ndarray]:
        import mlx.core as mx

        out = network(mx.array(np.stack(segments)))
        mx.eval(out)
        return list(np.array(out.astype(mx.float32)))

    return run


class SegmentedSeparator:
    """A `Separator` over one network or a weighted bag of networks (see the module docstring)."""

    def __init__(
        self,
        networks: Sequence[SeparationNetwork],
        weights: Sequence[Sequence[float]] | None = None,
        details: Mapping[str, str] | None = None,
        max_batch: int = 4,
    ) -> None:
        if not networks:
            raise ValueError("a separator needs at least one network")
        first = networks[0]
        for net in networks[1:]:
            same = (net.sources, net.sample_rate, net.channels) == (
                first.sources,
                first.sample_rate,
                first.channels,
            )
            if not same:
                raise ValueError("the networks of a bag must share sources, sample rate and channels")
        self.networks = list(networks)
        self.sources: tuple[str, ...] = tuple(first.sources)
        self.sample_rate: int = int(first.sample_rate)
        self.channels: int = int(first.channels)
        w = (
            np.ones((len(networks), len(self.sources)), np.float32)
            if weights is None
            else np.asarray(weights)
        )
        if w.shape != (len(networks), len(self.sources)) or not np.all(w >= 0) or not np.all(w.sum(0) > 0):
            raise ValueError(
                f"bag weights must be non-negative [networks={len(networks)} × sources={len(self.sources)}] "
                f"with every source weighted by some network; got shape {w.shape}"
            )
        self.weights = w.astype(np.float32)
        self.details = dict(details or {})
        self.max_batch = max(1, int(max_batch))
        self._runs = [_network_batch(net) for net in networks]

    def stem_indices(self, stems: Sequence[str] | None) -> list[int]:
        if stems is None:
            return list(range(len(self.sources)))
        unknown = [s for s in stems if s not in self.sources]
        if unknown:
            raise InvalidRequest(
                f"Unknown stem(s) {', '.join(map(repr, unknown))}: this model separates "
                f"{', '.join(self.sources)}.",
                param="stems",
                code="invalid_value",
            )
        return [self.sources.index(s) for s in dict.fromkeys(stems)]

    def separate_stream(
        self, audio: np.ndarray, options: SeparateOptions, seed: int | None = None
    ) -> Iterator[Any]:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise InvalidRequest(f"expected audio of shape [{self.channels}, samples], got {audio.shape}")
        if not 0 <= options.overlap < 1:
            raise InvalidRequest("overlap must be in [0, 1)", param="overlap")
        if options.shifts < 0:
            raise InvalidRequest("shifts must be >= 0", param="shifts")
        wanted = self.stem_indices(options.stems)
        samples = audio.shape[1]
        # Networks whose weights are zero for every wanted stem are skipped (htdemucs_ft asked for vocals
        # runs its vocals network only). Shift offsets are drawn up front, in demucs' order.
        rng = random.Random(seed)
        max_shift = int(MAX_SHIFT_SECONDS * self.sample_rate)
        used = [k for k in range(len(self.networks)) if np.any(self.weights[k, wanted])]
        shifts = {k: [rng.randint(0, max_shift) for _ in range(options.shifts)] for k in used}
        progress = _Progress(
            sum(
                len(
                    self._offsets(
                        self.networks[k], samples + (max_shift - o if options.shifts else 0), options
                    )
                )
                for k in used
                for o in (shifts[k] or [0])
            )
        )
        total = np.zeros((len(wanted), self.channels, samples), np.float32)
        padded = padded_segment(audio, 0, samples, samples + 2 * max_shift) if options.shifts else audio
        for k in used:
            est = np.zeros_like(total)
            passes: list[int | None] = list(shifts[k]) or [None]
            for offset in passes:
                if offset is None:
                    est += yield from self._split(k, audio, options, wanted, progress)
                    continue
                # demucs: separate from `offset` into the padded recording, keep the original span
                shifted = padded[:, offset : samples + max_shift]
                out = yield from self._split(k, shifted, options, wanted, progress)
                est += out[..., max_shift - offset :]
            total += est * (self.weights[k, wanted] / max(1, options.shifts))[:, None, None]
        total /= self.weights[:, wanted].sum(0)[:, None, None]
        yield {self.sources[i]: total[j] for j, i in enumerate(wanted)}

    @staticmethod
    def _offsets(network: SeparationNetwork, samples: int, options: SeparateOptions) -> range:
        return range(0, samples, max(1, int((1 - options.overlap) * network.segment)))

    def _split(
        self, k: int, audio: np.ndarray, options: SeparateOptions, wanted: list[int], progress: _Progress
    ) -> Generator[Any, Any, np.ndarray]:
        network = self.networks[k]
        samples, segment = audio.shape[1], int(network.segment)
        out = np.zeros((len(wanted), self.channels, samples), np.float32)
        weight_sum = np.zeros(samples, np.float32)
        weight = transition_weight(segment)
        offsets = list(self._offsets(network, samples, options))
        for first in range(0, len(offsets), self.max_batch):
            group = offsets[first : first + self.max_batch]
            lengths = [min(segment, samples - o) for o in group]
            inputs = [padded_segment(audio, o, n, segment) for o, n in zip(group, lengths, strict=True)]
            results = yield Batched(
                key=("separate", id(network)),
                payload=inputs,
                fn=self._runs[k],
                max_batch=self.max_batch,
                many=True,
            )
            for o, n, res in zip(group, lengths, results, strict=True):
                lead = (segment - n) // 2  # demucs' center_trim: the middle n samples
                out[..., o : o + n] += weight[:n] * res[wanted, :, lead : lead + n]
                weight_sum[o : o + n] += weight[:n]
            progress.done += len(group)
            yield progress.snapshot()
        return out / weight_sum


class _Progress:
    def __init__(self, total: int) -> None:
        self.done, self.total = 0, total

    def snapshot(self) -> SeparationProgress:
        return SeparationProgress(done=self.done, total=self.total)
