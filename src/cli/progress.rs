//! The progress line `plan` and `run` show when stderr is a terminal (never
//! in JSON-log mode, never in a pipe or a pod's log): objects scanned and
//! their rate, recordings deleted and their rate, per store. Log lines that
//! arrive meanwhile are printed above it ([`LogWriter`]).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Set once at start-up: stderr is a terminal and logs are text.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The bar on screen, if any, so that log lines can step around it.
fn active() -> &'static Mutex<Option<ProgressBar>> {
    static ACTIVE: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
    ACTIVE.get_or_init(|| Mutex::new(None))
}

pub(crate) fn enable(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// One command's progress line; a no-op when disabled.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    deleted: Arc<AtomicU64>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Shown only when enabled at start-up (a terminal, text logs).
    pub fn new() -> Self {
        if !ENABLED.load(Ordering::SeqCst) {
            return Self::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix}: {human_pos} objects scanned ({rate}){msg} [{elapsed}]",
            )
            .map(|style| {
                style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut a) = active().lock() {
            *a = Some(bar.clone());
        }
        let deleted = Arc::new(AtomicU64::new(0));
        // Deletions happen in the executor; show their count and rate.
        let ticker = {
            let (bar, deleted) = (bar.clone(), deleted.clone());
            tokio::spawn(async move {
                let mut first: Option<(Instant, u64)> = None;
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let n = deleted.load(Ordering::Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let (t0, n0) = *first.get_or_insert((Instant::now(), n));
                    let secs = t0.elapsed().as_secs_f64();
                    let rate = if secs > 0.5 {
                        format!(" ({:.0}/s)", (n - n0) as f64 / secs)
                    } else {
                        String::new()
                    };
                    bar.set_message(format!(" · {n} recordings deleted{rate}"));
                }
            })
        };
        Self {
            bar: Some(bar),
            deleted,
            ticker: Some(ticker),
        }
    }

    pub fn hidden() -> Self {
        Self {
            bar: None,
            deleted: Arc::new(AtomicU64::new(0)),
            ticker: None,
        }
    }

    /// The store being worked on.
    pub fn store(&self, name: &str) {
        if let Some(b) = &self.bar {
            b.set_prefix(name.to_string());
        }
    }

    pub fn scanned(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// For `execute::Options::progress`.
    pub fn deletions(&self) -> Option<Arc<AtomicU64>> {
        self.bar.as_ref().map(|_| self.deleted.clone())
    }

    /// Leaves the final figures on screen.
    pub fn finish(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            let n = self.deleted.load(Ordering::Relaxed);
            if n > 0 {
                b.set_message(format!(" · {n} recordings deleted"));
            }
            b.finish();
            if let Ok(mut a) = active().lock() {
                *a = None;
            }
        }
    }
}

impl crate::plan::Progress for Progress {
    fn store(&self, name: &str) {
        Progress::store(self, name)
    }
    fn scanned(&self) {
        Progress::scanned(self)
    }
    fn deletions(&self) -> Option<Arc<AtomicU64>> {
        Progress::deletions(self)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress {
    /// `out` for output that goes on while the line is shown (a text plan on
    /// the same terminal): written in chunks, each with the line stepped around.
    pub fn wrap<'a>(&self, out: &'a mut dyn Write) -> Around<'a> {
        Around {
            inner: out,
            bar: self.bar.clone(),
            buf: Vec::new(),
        }
    }
}

/// See [`Progress::wrap`].
pub(crate) struct Around<'a> {
    inner: &'a mut dyn Write,
    bar: Option<ProgressBar>,
    buf: Vec<u8>,
}

impl Around<'_> {
    fn drain(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let (inner, buf) = (&mut self.inner, &self.buf);
        match &self.bar {
            Some(b) => b.suspend(|| inner.write_all(buf).and_then(|_| inner.flush()))?,
            None => inner.write_all(buf)?,
        }
        self.buf.clear();
        Ok(())
    }
}

impl Write for Around<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bar.is_none() {
            return self.inner.write(data);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 32 * 1024 {
            self.drain()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

/// Writes log lines to stderr, above the progress line when one is shown.
#[derive(Clone, Copy)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = active().lock().ok().and_then(|a| a.clone());
        match bar {
            Some(b) => b.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
