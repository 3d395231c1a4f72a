"""Decoding one batch of 30-second windows: logit rules, greedy and beam-search strategies.

Follows openai/whisper `decoding.py` (SuppressBlank, SuppressTokens, ApplyTimestampRules, GreedyDecoder,
BeamSearchDecoder, MaximumLikelihoodRanker) as small pieces over a `Session`: the model-side object that
owns the KV caches of a batch of rows. Rows may come from different requests; each row carries its own
initial tokens (prompt, language, task), so the batch is left-padded by the session.

The logit rules and the token choice run where the session says (`Session.host_logits`, fixed by the
backend at load): in numpy on the host (the CPU backends: vectorised, with the C top-k where built) or as
device-side MLX masks from a few numbers per row (a GPU: the sampled tokens are read back each step
anyway to detect the end of every row). Both give the same tokens (tests/models/whisper/test_decoding.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import mlx.core as mx
import numpy as np

from models.cpu import kernels
from models.whisper.constants import SAMPLE_LEN, TIME_PRECISION
from models.whisper.mlx_backend import Session
from models.whisper.tokenizer import WhisperTokenizer

NEG_INF = float("-inf")


@dataclass(frozen=True)
class DecodeOptions:
    temperature: float = 0.0
    beam_size: int | None = None
    patience: float = 1.0
    length_penalty: float | None = None
    sample_len: int = SAMPLE_LEN
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    suppress_blank: bool = True


@dataclass
class DecodedWindow:
    tokens: list[int]  # sampled tokens, EOT excluded
    token_logprobs: list[float]
    sum_logprob: float
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = 0.0
    text: str = ""


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass
class _RowState:
    sampled: list[int] = field(default_factory=list)


class LogitRules:
    """SuppressTokens + SuppressBlank + ApplyTimestampRules: device-side MLX masks (`apply`) or the same
    rules in numpy on the host (`apply_host`)."""

    def __init__(self, tokenizer: WhisperTokenizer, n_vocab: int, options: DecodeOptions) -> None:
        self.sp = tokenizer
        self.n_vocab = n_vocab
        self.timestamps = not options.without_timestamps
        self.suppress_blank = options.suppress_blank
        # 0.02 s per timestamp token: max_initial_timestamp 1.0 s → index 50
        self.max_initial = (
            round(options.max_initial_timestamp / TIME_PRECISION) if options.max_initial_timestamp else None
        )
        base = np.zeros(n_vocab, np.float32)
        base[[t for t in tokenizer.suppress if t < n_vocab]] = NEG_INF
        if self.timestamps:
            base[tokenizer.no_timestamps] = NEG_INF
        self.base = mx.array(base)
        blank = base.copy()
        if self.suppress_blank:
            blank[[*tokenizer.blank, tokenizer.eot]] = NEG_INF
        self.first = mx.array(blank)
        self.base_host, self.first_host = base, blank
        self.vocab = mx.arange(n_vocab)[None, :]

    def _limits(self, seq: Sequence[int]) -> tuple[int, int, bool, bool]:
        """The timestamp rules for one row: (lowest allowed timestamp id, highest allowed id, text
        forbidden, only a timestamp allowed)."""
        sp = self.sp
        last_ts = len(seq) >= 1 and seq[-1] >= sp.timestamp_begin
        pen_ts = len(seq) < 2 or seq[-2] >= sp.timestamp_begin
        ts = [t for t in seq if t >= sp.timestamp_begin]
        low = sp.timestamp_begin
        if ts:  # non-decreasing, and a segment must have non-zero length
            low = ts[-1] if (last_ts and not pen_ts) else ts[-1] + 1
        if last_ts and pen_ts:
            low = self.n_vocab  # two timestamps in a row: text must follow
        high = self.n_vocab
        if len(seq) == 0 and self.max_initial is not None:
            high = sp.timestamp_begin + self.max_initial
        # after an opening timestamp a closing one may follow, not text; a segment starts with one
        return low, high, last_ts and not pen_ts, len(seq) == 0

    def apply_host(self, logits: np.ndarray, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """The same rules on the host, for the CPU, where numpy's vectorised exp is ~10x MLX's scalar one.
        logits [B, V] float32 (not modified); returns the filtered copy."""
        first = all(len(r) == 0 for r in rows)
        x = logits + (self.first_host if first else self.base_host)
        if not self.timestamps:
            return x
        tsb, eot = self.sp.timestamp_begin, self.sp.eot
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for b, seq in enumerate(rows):
                low, high, no_text, only_ts = self._limits(seq)
                row = x[b]
                row[tsb:low] = NEG_INF
                row[high + 1 :] = NEG_INF
                if no_text:
                    row[:eot] = NEG_INF
                if only_ts:
                    row[:tsb] = NEG_INF
                # if the timestamps together are likelier than any single text token, sample a timestamp
                if _logsumexp(row[tsb:]) > row[:tsb].max():
                    row[:tsb] = NEG_INF
        return x

    def apply(self, logits: mx.array, rows: Sequence[Sequence[int]]) -> mx.array:
        """logits [B, V] float32; rows: the tokens sampled so far for each row."""
        first = all(len(r) == 0 for r in rows)
        logits = logits + (self.first if first else self.base)
        if not self.timestamps:
            return logits
        sp, v = self.sp, self.vocab
        lo, hi, no_text, only_ts = zip(*(self._limits(seq) for seq in rows), strict=True)
        lo_a, hi_a = mx.array(lo)[:, None], mx.array(hi)[:, None]
        no_text_a, only_ts_a = mx.array(no_text)[:, None], mx.array(only_ts)[:, None]
        is_ts = v >= sp.timestamp_begin
        bad = (is_ts & ((v < lo_a) | (v > hi_a))) | ((v < sp.eot) & no_text_a) | (~is_ts & only_ts_a)
        logits = mx.where(bad, NEG_INF, logits)
        # if the timestamps together are likelier than any single text token, sample a timestamp
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        ts_lp = mx.logsumexp(logprobs[:, sp.timestamp_begin :], axis=-1, keepdims=True)
        text_max = logprobs[:, : sp.timestamp_begin].max(axis=-1, keepdims=True)
        return mx.where((ts_lp > text_max) & ~is_ts, NEG_INF, logits)


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    if not np.isfinite(m):
        return m
    return m + float(np.log(np.exp(x - m).sum(dtype=np.float64)))


def host_log_softmax(x: np.ndarray) -> np.ndarray:
    """[B, V] float32 → log-probabilities (float32), computed on the host."""
    m = x.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        lse = m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return x - lse


def _host_top(x: np.ndarray, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """The ``k`` best tokens of each row of filtered logits ``[B, V]`` and their log-probabilities: one C
    pass per row where the kernels are built, else a numpy log-softmax and argmax/partition."""
    best = kernels.top_logprobs(x, k)
    if best is None:
        lp = host_log_softmax(x)
        top = lp.argmax(axis=-1)[:, None] if k == 1 else np.argpartition(-lp, kth=k - 1, axis=-1)[:, :k]
        best = top, np.take_along_axis(lp, top, axis=-1)
    return cast(list[list[int]], best[0].tolist()), cast(list[list[float]], best[1].tolist())


def _log_softmax(x: mx.array) -> mx.array:
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


def no_speech_probs(sot_logits: mx.array, tokenizer: WhisperTokenizer) -> list[float]:
    return cast(list[float], mx.softmax(sot_logits, axis=-1)[:, tokenizer.no_speech].tolist())


def greedy_decode(
    session: Session,
    prompts: Sequence[Sequence[int]],
    sot_index: Sequence[int],
    tokenizer: WhisperTokenizer,
    options: DecodeOptions,
    *,
    key: mx.array | None = None,
) -> list[DecodedWindow]:
    """Greedy (temperature 0) or sampling decode of every row until EOT or `sample_len` tokens."""
    rules = LogitRules(tokenizer, session.n_vocab, options)
    logits, sot_logits = session.prefill(prompts, sot_index)
    nsp = no_speech_probs(sot_logits, tokenizer)
    n = len(prompts)
    rows = [_RowState() for _ in range(n)]
    lps: list[list[float]] = [[] for _ in range(n)]
    done = [False] * n
    budget = min(options.sample_len, session.n_text_ctx - max(len(p) for p in prompts))
    host = session.host_logits and options.temperature == 0
    for i in range(budget):
        if host:
            filtered = rules.apply_host(np.array(logits, dtype=np.float32), [r.sampled for r in rows])
            picks, pick_lps = _host_top(filtered, 1)
            toks, lpv = [p[0] for p in picks], [p[0] for p in pick_lps]
        else:
            logits = rules.apply(logits, [r.sampled for r in rows])
            if options.temperature == 0:
                nxt = mx.argmax(logits, axis=-1)
            else:
                key, sub = mx.random.split(key) if key is not None else (None, None)
                nxt = mx.random.categorical(logits / options.temperature, key=sub)
            lp = mx.take_along_axis(_log_softmax(logits), nxt[:, None], axis=-1)[:, 0]
            mx.eval(nxt, lp)  # one synchronisation per step
            toks, lpv = cast(list[int], nxt.tolist()), cast(list[float], lp.tolist())
        for r in range(n):
            if done[r]:
                continue
            if toks[r] == tokenizer.eot:
                done[r] = True
                lps[r].append(lpv[r])  # EOT's logprob counts in the sum, as in openai/whisper
                continue
            rows[r].sampled.append(toks[r])
            lps[r].append(lpv[r])
        if all(done) or i == budget - 1:
            break
        feed = [tokenizer.eot if done[r] else toks[r] for r in range(n)]
        logits = session.step(mx.array(feed))
    out = []
    for r in range(n):
        total = float(sum(lps[r]))
        toks_r = rows[r].sampled
        out.append(
            DecodedWindow(
                toks_r, lps[r][: len(toks_r)], total, total / (len(toks_r) + 1), nsp[r], options.temperature
            )
        )
    return out


def beam_search_decode(
    session: Session,
    prompts: Sequence[Sequence[int]],
    sot_index: Sequence[int],
    tokenizer: WhisperTokenizer,
    options: DecodeOptions,
) -> list[DecodedWindow]:
    """Beam search with patience; the best finished hypothesis per audio by length-normalised logprob."""
    beam = options.beam_size or 5
    max_candidates = round(beam * (options.patience or 1.0))
    rules = LogitRules(tokenizer, session.n_vocab, options)
    n_audio = len(prompts)
    logits, sot_logits = session.prefill(prompts, sot_index)
    nsp = no_speech_probs(sot_logits, tokenizer)
    # expand every audio row to `beam` rows
    expand = mx.array([a for a in range(n_audio) for _ in range(beam)])
    session.reorder(expand)
    logits = logits[expand]
    seqs: list[list[int]] = [[] for _ in range(n_audio * beam)]
    seq_lps: list[list[float]] = [[] for _ in range(n_audio * beam)]
    sums = [0.0] * (n_audio * beam)
    finished: list[dict[tuple[int, ...], tuple[float, list[float]]]] = [{} for _ in range(n_audio)]
    budget = min(options.sample_len, session.n_text_ctx - max(len(p) for p in prompts))
    for step in range(budget):
        k = beam + 1
        if session.host_logits:
            idx_l, lp_l = _host_top(rules.apply_host(np.array(logits, dtype=np.float32), seqs), k)
        else:
            logprobs = _log_softmax(rules.apply(logits, seqs))
            top_idx = mx.argpartition(-logprobs, kth=k - 1, axis=-1)[:, :k]
            top_lp = mx.take_along_axis(logprobs, top_idx, axis=-1)
            idx_l, lp_l = cast(list[list[int]], top_idx.tolist()), cast(list[list[float]], top_lp.tolist())
        new_seqs, new_lps, new_sums, sources, feed = [], [], [], [], []
        for a in range(n_audio):
            # A candidate is (prefix, token), prefixes interned once per row: rows with the same sequence
            # share a key (the later one wins, as openai's dict over whole sequences), and only the kept
            # candidates are materialised as sequences.
            prefixes: dict[tuple[int, ...], int] = {}
            cands: dict[tuple[int, int], tuple[float, int, float]] = {}
            for j in range(beam):
                row = a * beam + j
                if step == 0 and j > 0:
                    break  # all beams are identical before the first step
                prefix = prefixes.setdefault(tuple(seqs[row]), row)
                for tok, lp in zip(idx_l[row], lp_l[row], strict=True):
                    cands[(prefix, tok)] = (sums[row] + lp, row, lp)
            saved = 0
            for key in sorted(cands, key=lambda c: cands[c][0], reverse=True):
                score, row, lp = cands[key]
                tok = key[1]
                if tok == tokenizer.eot:
                    if len(finished[a]) < max_candidates:
                        finished[a].setdefault(tuple(seqs[row]), (score, [*seq_lps[row], lp]))
                    continue
                new_seqs.append([*seqs[row], tok])
                new_lps.append([*seq_lps[row], lp])
                new_sums.append(score)
                sources.append(row)
                feed.append(tok)
                saved += 1
                if saved == beam:
                    break
        if all(len(f) >= max_candidates for f in finished) or step == budget - 1:
            seqs, seq_lps, sums = new_seqs, new_lps, new_sums
            break
        session.reorder(mx.array(sources))
        seqs, seq_lps, sums = new_seqs, new_lps, new_sums
        logits = session.step(mx.array(feed))
    out = []
    for a in range(n_audio):
        cands_a = dict(finished[a])
        if len(cands_a) < beam:  # not enough finished: take the best unfinished
            alive = sorted(range(a * beam, (a + 1) * beam), key=lambda r: sums[r], reverse=True)
            for r in alive:
                cands_a.setdefault(tuple(seqs[r]), (sums[r], seq_lps[r]))
                if len(cands_a) >= beam:
                    break

        def normalised(item: tuple[tuple[int, ...], tuple[float, list[float]]]) -> float:
            toks, (lp, _) = item
            n = len(toks)
            penalty = n if options.length_penalty is None else ((5 + n) / 6) ** options.length_penalty
            return lp / max(penalty, 1e-9) if penalty else lp

        best_toks, (best_lp, best_lps) = max(cands_a.items(), key=normalised)
        toks = list(best_toks)
        out.append(
            DecodedWindow(
                toks, best_lps[: len(toks)], best_lp, best_lp / (len(toks) + 1), nsp[a], options.temperature
            )
        )
    return out
