"""Prometheus metrics of one app (its own registry, so several apps can live in one process), labelled by
model."""

from __future__ import annotations

from pipelines.serving.prediction_log import PredictionLog

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ModelMetrics:
    """One model's series, resolved once: a request only increments them."""

    def __init__(self, metrics: ServiceMetrics, model: str):
        self.model = model
        self.rows = metrics.rows.labels(model)
        self.latency = metrics.latency.labels(model)
        self.version = metrics.model_version.labels(model)
        self.load_failures = metrics.load_failures.labels(model)
        self._requests = metrics.requests
        self._by_status: dict[int, object] = {}

    def request(self, status: int, seconds: float) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._requests.labels(self.model, str(status))
        counter.inc()
        self.latency.observe(seconds)


class ServiceMetrics:
    def __init__(self, prediction_log: PredictionLog | None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("prediction_requests", "Scoring requests by model and HTTP status",
                                ["model", "status"], registry=self.registry)
        self.rows = Counter("prediction_rows", "Rows scored and returned", ["model"], registry=self.registry)
        self.latency = Histogram("prediction_latency_seconds", "Time to answer a scoring request", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_version = Gauge("prediction_model_version", "Registry version being served", ["model"],
                                   registry=self.registry)
        self.load_failures = Counter("prediction_model_load_failures", "Reloads of a model that failed "
                                     "(the model served before keeps serving)", ["model"], registry=self.registry)
        self._models: dict[str, ModelMetrics] = {}
        if prediction_log is not None:
            Gauge("prediction_log_backlog_rows", "Rows served but not yet written to the prediction log",
                  registry=self.registry).set_function(lambda: prediction_log.backlog)
            Gauge("prediction_log_rows_written", "Rows written to the prediction log",
                  registry=self.registry).set_function(lambda: prediction_log.rows_written)
            Gauge("prediction_log_writer_cpu_seconds", "CPU time of the prediction log's writer thread",
                  registry=self.registry).set_function(lambda: prediction_log.writer_cpu_seconds)
            Gauge("prediction_log_rows_set_aside", "Rows the prediction log could not write, kept in its "
                  "set-aside file with the reason", registry=self.registry
                  ).set_function(lambda: prediction_log.rows_set_aside)
            Gauge("prediction_log_spilled_rows", "Rows spilled to disk while the log's store is down, written "
                  "when it answers again", registry=self.registry).set_function(lambda: prediction_log.spilled_rows)
            Gauge("prediction_log_store_up", "1 while the prediction log's store takes writes, 0 while it is down",
                  registry=self.registry).set_function(lambda: 0.0 if prediction_log.store_error else 1.0)
            Gauge("prediction_log_requests_refused", "Requests answered 503 because the log's queue in memory "
                  "was full", registry=self.registry).set_function(lambda: prediction_log.requests_refused)

    def version_served(self, model) -> None:
        """``model`` (a LoadedModel) is the version served."""
        if model.version.isdigit():
            self.of(model.name).version.set(float(model.version))

    def of(self, model: str) -> ModelMetrics:
        found = self._models.get(model)
        if found is None:
            found = self._models[model] = ModelMetrics(self, model)
        return found
