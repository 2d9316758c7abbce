//! Metrics in the Prometheus text format, named by Prometheus conventions.
//!
//! A batch run records its figures once and pushes them to a Pushgateway
//! (`--pushgateway URL`, the convention for batch jobs) or writes them to a
//! textfile for node_exporter (`--metrics-file`); the daemon keeps them across
//! runs and serves them on `/metrics`. Counters count over the process's life
//! (one run for a batch job); gauges describe the last run.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ledger::RunStatus;
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("cannot write the metrics file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot push the metrics to {url}: {message}")]
    Push { url: String, message: String },
}

/// How a run ended, as the `status` label of `lethe_runs_total` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLabel {
    /// A run that recorded its end, with its status.
    Finished(RunStatus),
    /// A dry run: it deleted nothing, so it is no retention success.
    DryRun,
    /// A pass that could not start or go on.
    Failed,
}

impl RunLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            RunLabel::Finished(status) => status.as_str(),
            RunLabel::DryRun => "dry-run",
            RunLabel::Failed => "failed",
        }
    }
}

/// What one run contributes, per store.
#[derive(Debug, Clone, Default)]
pub struct StoreFigures {
    pub store: String,
    pub scanned: u64,
    /// Recordings deleted, by purpose.
    pub deleted_by_purpose: Vec<(String, u64)>,
    pub bytes_deleted: u64,
    pub failed: u64,
    pub held: u64,
    /// Objects kept and reported, by reason code (`no-rule`,
    /// `unrepresentable-key`, ...).
    pub unclassified: Vec<(String, u64)>,
}

#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    scanned: IntCounterVec,
    deleted: IntCounterVec,
    bytes: IntCounterVec,
    failed: IntCounterVec,
    held: IntGaugeVec,
    unclassified: IntGaugeVec,
    runs: IntCounterVec,
    duration: Gauge,
    last_success: Gauge,
    last_exit_code: IntGauge,
    in_progress: IntGauge,
    skipped: IntCounter,
    requests_overdue: IntGauge,
}

impl Telemetry {
    pub fn new() -> Result<Self, TelemetryError> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, TelemetryError> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, TelemetryError> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let scanned = counter(
            "lethe_objects_scanned_total",
            "Objects listed in the stores.",
            &["store"],
        )?;
        let deleted = counter(
            "lethe_objects_deleted_total",
            "Recordings deleted and verified absent.",
            &["store", "purpose"],
        )?;
        let bytes = counter(
            "lethe_bytes_deleted_total",
            "Bytes of the objects deleted (recordings, sidecars, companions).",
            &["store"],
        )?;
        let failed = counter(
            "lethe_deletions_failed_total",
            "Deletions that failed (retried by the next run).",
            &["store"],
        )?;
        let held = gauge_vec(
            "lethe_objects_held",
            "Recordings kept by a legal hold, as of the last run.",
            &["store"],
        )?;
        let unclassified = gauge_vec(
            "lethe_objects_unclassified",
            "Objects kept and reported because something could not be established (no rule, no purpose, unreadable, a key the store cannot address exactly), by reason, as of the last run.",
            &["store", "reason"],
        )?;
        let runs = counter(
            "lethe_runs_total",
            "Retention runs, by how they ended.",
            &["status"],
        )?;
        let duration = Gauge::new("lethe_run_duration_seconds", "Duration of the last run.")?;
        registry.register(Box::new(duration.clone()))?;
        let last_success = Gauge::new(
            "lethe_last_success_timestamp_seconds",
            "When the last run that completed without failures ended (Unix time).",
        )?;
        registry.register(Box::new(last_success.clone()))?;
        let last_exit_code = IntGauge::new(
            "lethe_last_exit_code",
            "Exit code of the last run (0 success, 1 failure, 2 usage, 3 safety limit, 4 verification).",
        )?;
        registry.register(Box::new(last_exit_code.clone()))?;
        let in_progress = IntGauge::new("lethe_run_in_progress", "1 while a run is in progress.")?;
        registry.register(Box::new(in_progress.clone()))?;
        let skipped = IntCounter::new(
            "lethe_runs_skipped_total",
            "Scheduled runs skipped because the previous one was still in progress.",
        )?;
        registry.register(Box::new(skipped.clone()))?;
        let requests_overdue = IntGauge::new(
            "lethe_requests_overdue",
            "Data subjects' requests past their GDPR Art. 12(3) deadline and not answered, as of the last run.",
        )?;
        registry.register(Box::new(requests_overdue.clone()))?;
        Ok(Self {
            registry,
            scanned,
            deleted,
            bytes,
            failed,
            held,
            unclassified,
            runs,
            duration,
            last_success,
            last_exit_code,
            in_progress,
            skipped,
            requests_overdue,
        })
    }

    pub fn run_started(&self) {
        self.in_progress.set(1);
    }

    pub fn run_skipped(&self) {
        self.skipped.inc();
    }

    /// The last success as the ledger remembers it, so that a failed run's
    /// figures (or a restarted daemon's) do not report 0 over it.
    pub fn set_last_success(&self, ended: DateTime<Utc>) {
        self.last_success
            .set(ended.timestamp_millis() as f64 / 1000.0);
    }

    /// The requests a run found late (see [`crate::request::late_notices`]).
    pub fn set_requests_overdue(&self, n: u64) {
        self.requests_overdue.set(n as i64);
    }

    /// Records a finished run.
    pub fn record_run(
        &self,
        stores: &[StoreFigures],
        status: RunLabel,
        exit_code: i64,
        duration: Duration,
        ended: DateTime<Utc>,
    ) {
        // A reason that no longer occurs must not linger from an earlier pass.
        self.unclassified.reset();
        for s in stores {
            self.scanned
                .with_label_values(&[&s.store])
                .inc_by(s.scanned);
            for (purpose, n) in &s.deleted_by_purpose {
                self.deleted
                    .with_label_values(&[&s.store, purpose])
                    .inc_by(*n);
            }
            self.bytes
                .with_label_values(&[&s.store])
                .inc_by(s.bytes_deleted);
            self.failed.with_label_values(&[&s.store]).inc_by(s.failed);
            self.held.with_label_values(&[&s.store]).set(s.held as i64);
            for (reason, n) in &s.unclassified {
                self.unclassified
                    .with_label_values(&[&s.store, reason])
                    .set(*n as i64);
            }
        }
        self.runs.with_label_values(&[status.as_str()]).inc();
        self.duration.set(duration.as_secs_f64());
        self.last_exit_code.set(exit_code);
        self.in_progress.set(0);
        if exit_code == 0 && status == RunLabel::Finished(RunStatus::Completed) {
            self.last_success
                .set(ended.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// The metrics in the Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> Result<String, TelemetryError> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Writes the textfile for node_exporter's textfile collector (atomically).
    pub fn write_file(&self, path: &Path) -> Result<(), TelemetryError> {
        let err = |source| TelemetryError::File {
            path: path.display().to_string(),
            source,
        };
        let text = self.encode()?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".lethe-metrics-")
            .tempfile_in(dir)
            .map_err(err)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }

    /// Pushes to a Pushgateway, replacing this job's group (`PUT
    /// /metrics/job/lethe`, plus `/shard/I-of-N` for a shard), so that each
    /// run's push replaces the last one's, whatever pod ran it. A URL that
    /// already names a group (`http://gw:9091/metrics/job/lethe-eu/env/prod`)
    /// is used as it is, plus the shard.
    pub async fn push(&self, gateway: &str, shard: Option<&str>) -> Result<(), TelemetryError> {
        use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
        let shard = shard
            .map(|s| format!("/shard/{}", s.replace('/', "-of-")))
            .unwrap_or_default();
        let base = gateway.trim_end_matches('/');
        let url = if base.contains("/metrics/job/") {
            format!("{base}{shard}")
        } else {
            format!("{base}/metrics/job/lethe{shard}")
        };
        let fail = |message: String| TelemetryError::Push {
            url: crate::config::redact_url(&url),
            message,
        };
        let body = self.encode()?;
        let request = http::Request::put(&url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body(HttpRequestBody::from(body))
            .map_err(|e| fail(e.to_string()))?;
        let options = object_store::ClientOptions::new()
            .with_allow_http(true)
            .with_timeout(Duration::from_secs(30));
        let client = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| fail(e.to_string()))?;
        let response = client
            .execute(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response
                .into_body()
                .bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(fail(format!("HTTP {status}: {}", text.trim())));
        }
        Ok(())
    }
}

/// Serves `GET /metrics` (the text format) and `GET /healthz` on `listener`
/// until the task is dropped; the daemon's window for Prometheus and the
/// kubelet. Anything else is 404; a client that does not send its request
/// headers within ten seconds is dropped.
pub async fn serve(listener: tokio::net::TcpListener, telemetry: Telemetry) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&telemetry, &request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn respond<B>(
    telemetry: &Telemetry,
    request: &http::Request<B>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let reply = |status: http::StatusCode, content_type: &str, body: String| {
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        response
    };
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => match telemetry.encode() {
            Ok(text) => reply(
                http::StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ),
            Err(e) => reply(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
        "/healthz" => reply(
            http::StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".into(),
        ),
        _ => reply(
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_metric_names() {
        let t = Telemetry::new().unwrap();
        let figures = StoreFigures {
            store: "recordings".into(),
            scanned: 10,
            deleted_by_purpose: vec![("quality".into(), 3)],
            bytes_deleted: 300,
            failed: 1,
            held: 2,
            unclassified: vec![("no-rule".into(), 3), ("unrepresentable-key".into(), 1)],
        };
        t.record_run(
            &[figures],
            RunLabel::Finished(RunStatus::Completed),
            0,
            Duration::from_millis(1500),
            crate::clock::SystemClock::read(),
        );
        let text = t.encode().unwrap();
        for line in [
            "lethe_objects_scanned_total{store=\"recordings\"} 10",
            "lethe_objects_deleted_total{purpose=\"quality\",store=\"recordings\"} 3",
            "lethe_bytes_deleted_total{store=\"recordings\"} 300",
            "lethe_deletions_failed_total{store=\"recordings\"} 1",
            "lethe_objects_held{store=\"recordings\"} 2",
            "lethe_objects_unclassified{reason=\"no-rule\",store=\"recordings\"} 3",
            "lethe_objects_unclassified{reason=\"unrepresentable-key\",store=\"recordings\"} 1",
            "lethe_run_duration_seconds 1.5",
            "# TYPE lethe_last_success_timestamp_seconds gauge",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
