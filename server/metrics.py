"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlx_audio_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "mlx_audio_request_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "mlx_audio_queue_depth", "Jobs queued or running on the MLX worker", registry=r
        )
        self.rtf = Histogram(
            "mlx_audio_real_time_factor",
            "Processing time divided by audio duration",
            ["model", "task"],
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=r,
        )
        self.time_to_first_audio = Histogram(
            "mlx_audio_time_to_first_audio_seconds",
            "Speech: time to the first audio bytes",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "mlx_audio_model_load_seconds", "Model load time", ["model"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.resident_models = Gauge("mlx_audio_resident_models", "Models loaded in memory", registry=r)
        self.jobs_completed = Gauge(
            "mlx_audio_worker_jobs_completed", "Jobs the MLX worker finished", registry=r
        )
        self.jobs_cancelled = Gauge(
            "mlx_audio_worker_jobs_cancelled", "Jobs cancelled because their client went away", registry=r
        )
        self.batches = Gauge("mlx_audio_worker_batches", "Batched passes run for streams", registry=r)
        self.realtime_sessions = Gauge(
            "mlx_audio_realtime_sessions", "Open realtime transcription sockets", registry=r
        )
        self.realtime_turns = Counter(
            "mlx_audio_realtime_turns", "Realtime turns transcribed", ["outcome"], registry=r
        )
        self.separations_running = Gauge(
            "mlx_audio_separations_running", "Separation jobs in progress", ["model"], registry=r
        )
        self.separation_segments = Counter(
            "mlx_audio_separation_segments",
            "Segments separated (progress of long jobs)",
            ["model"],
            registry=r,
        )
        self.largest_batch = Gauge(
            "mlx_audio_worker_largest_batch", "Most requests sharing one pass", registry=r
        )
        self.resident_bytes = Gauge(
            "mlx_audio_resident_model_bytes", "Memory held by each loaded model", ["model"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
