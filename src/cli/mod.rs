//! The command line: the only place that knows clap, anyhow and exit codes.
//!
//! Each command is a function that puts the library's stages in order and
//! returns an [`Exit`] code, or a [`Failure`] carrying the code and the error
//! chain. `main` prints the chain once and maps it to the process exit code:
//! 0 success, 1 runtime failure, 2 usage/config/policy error (nothing
//! deleted), 3 stopped by a safety limit (nothing deleted), 4 verification
//! failed.

mod daemon;
mod demo;
mod hold;
mod plan;
mod progress;
mod requests;
mod run;
mod verify;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::{self, EnvOverrides, Settings};
use crate::policy::Policy;

/// Process exit codes: the contract scripts rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Runtime = 1,
    Usage = 2,
    Safety = 3,
    Verification = 4,
}

/// A command that could not do its job.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

pub type Outcome = Result<Exit, Failure>;

pub(crate) trait OrExit<T> {
    fn or_exit(self, exit: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            exit,
            error: e.into(),
        })
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "lethe",
    version,
    about = "Retention and erasure of recorded calls, with signed deletion certificates"
)]
struct Cli {
    /// Config file [default: $LETHE_CONFIG, else ./lethe.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr: auto is text on a terminal, JSON lines otherwise
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what a run would do now (or at TIME); deletes nothing
    Plan {
        /// Evaluate as of this time (RFC 3339, or a date YYYY-MM-DD meaning midnight UTC)
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// Output format: text for people, json for programs
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also write the exact list of deletions to FILE, for review and `run --plan FILE`
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// One retention pass: delete what expired, verify, record, certify
    Run(run::RunOptions),
    /// Run the retention pass on the config's [schedule] cron, serving /metrics and /healthz, until SIGTERM
    Daemon,
    /// Check a certificate's signature, manifest and chain link
    Verify {
        /// The certificate file (lethe-cert-NNNNNN.json)
        cert: PathBuf,
        /// Public key (PEM) [default: the configured signing key + .pub]
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Also check in the stores that every listed object is gone
        #[arg(long)]
        check_store: bool,
        /// Check an inclusion proof (from `lethe proof`) against the certificate; no manifest needed
        #[arg(long, value_name = "FILE")]
        proof: Option<PathBuf>,
        /// Accept a certificate whose predecessor is missing (the chain link is then not checked)
        #[arg(long)]
        allow_missing_previous: bool,
    },
    /// Prove that one object is in a certificate, without revealing the others
    Proof {
        /// The certificate file (or its URL in the certificates store)
        cert: PathBuf,
        /// The object's key
        #[arg(long)]
        key: String,
        /// The object's store, if the key is in several
        #[arg(long)]
        store: Option<String>,
    },
    /// Erase every recording of a data subject now (GDPR Art. 17), except what a
    /// hold or a legal obligation protects; issues a signed erasure receipt
    Erase {
        /// The subject, as the `{subject}` capture or a sidecar's `subject` names it
        #[arg(long)]
        subject: String,
        /// The erasure request's id (e.g. DSR-2026-0042)
        #[arg(long)]
        request: String,
        /// When the request was received (a date or RFC 3339 time; default: now,
        /// or when `requests open` registered it)
        #[arg(long, value_name = "DATE")]
        received: Option<String>,
        /// Show what would be erased and kept; delete and record nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// The register of data subjects' requests and their GDPR Art. 12(3) deadlines
    Requests {
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// Legal holds: freeze recordings for a case, whatever their retention
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Ledger maintenance
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Create a new Ed25519 key pair: FILE (private, mode 0600) and FILE.pub
    Keygen {
        /// Where to write the private key; the public key goes to FILE.pub (neither is overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Lay out a sample store, policy, key and config in DIR, then plan, run and verify
    Demo {
        /// A new or empty folder to lay the demo out in
        #[arg(long, value_name = "DIR", default_value = "lethe-demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum HoldCommand {
    /// Place a hold; a recording matching any selector is held (at least one selector is required:
    /// --subject, --call-id, --key, --prefix or --recorded-between)
    Place {
        /// The case id; it can never be reused for another hold
        #[arg(long)]
        case: String,
        /// Why the recordings are frozen (recorded in the ledger)
        #[arg(long)]
        reason: String,
        /// Who places it (recorded in the ledger)
        #[arg(long)]
        by: String,
        /// Selector: recordings of this subject (the {subject} capture or a sidecar's subject); repeatable
        #[arg(long, value_name = "SUBJECT")]
        subject: Vec<String>,
        /// Selector: the recording with this {call_id} capture; repeatable
        #[arg(long = "call-id", value_name = "CALL_ID")]
        call_id: Vec<String>,
        /// Selector: exactly this key, relative to the store (as `lethe plan` lists it); repeatable
        #[arg(long, value_name = "KEY")]
        key: Vec<String>,
        /// Selector: every key that starts with this text, literally (no wildcards), e.g. calls/disputes/2025/; repeatable
        #[arg(long, value_name = "PREFIX")]
        prefix: Vec<String>,
        /// Selector: recorded between these inclusive dates, e.g. 2025-01-01..2025-03-31; repeatable
        #[arg(long = "recorded-between", value_name = "FROM..TO")]
        recorded_between: Vec<String>,
        /// Limit the hold to one store
        #[arg(long)]
        store: Option<String>,
        /// A date by which the hold should be reviewed (reported by plans; never released by itself)
        #[arg(long, value_name = "DATE")]
        review: Option<String>,
        /// Do not scan the stores to count the recordings the hold covers now
        #[arg(long)]
        no_scan: bool,
    },
    /// Release a hold: its recordings return to their normal retention
    Release {
        /// The case id of the hold
        #[arg(long)]
        case: String,
        /// Who releases it (recorded in the ledger)
        #[arg(long)]
        by: String,
        /// Why it is released (recorded in the ledger)
        #[arg(long)]
        reason: String,
    },
    /// Approve a requested release (when [holds] release_approvals asks for more than one person)
    ApproveRelease {
        /// The case id of the hold
        #[arg(long)]
        case: String,
        /// Who approves (a person other than the requester and earlier approvers)
        #[arg(long)]
        by: String,
    },
    /// List the active holds (or all, with --all)
    List {
        /// Also list released holds, with who requested and approved the release
        #[arg(long)]
        all: bool,
        /// Output format: text for people, json for programs
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show a hold and the recordings it holds now
    Show {
        /// The case id of the hold
        case: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RequestsCommand {
    /// Register a request when it arrives; `erase --request R` answers it later
    Open {
        /// What the subject asked for
        #[arg(long, value_enum)]
        kind: crate::request::RequestKind,
        /// The subject, as the `{subject}` capture or a sidecar's `subject` names it
        /// (the register keeps only its SHA-256)
        #[arg(long)]
        subject: String,
        /// The request's id (e.g. DSR-2026-0042); it names this request for good
        #[arg(long)]
        request: String,
        /// Who registers it (recorded in the ledger)
        #[arg(long)]
        by: String,
        /// When it was received (a date or RFC 3339 time; default: now)
        #[arg(long, value_name = "DATE")]
        received: Option<String>,
    },
    /// List the requests not yet answered (or all, with --all): received, deadline, late or on time
    List {
        /// Also list answered requests
        #[arg(long)]
        all: bool,
        /// Output format: text for people, json for programs
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The one extension Art. 12(3) allows, before the first deadline passes
    Extend {
        /// The request's id
        #[arg(long)]
        request: String,
        /// Who extends it (recorded in the ledger)
        #[arg(long)]
        by: String,
        /// Why (the subject must be told the reasons)
        #[arg(long)]
        reason: String,
        /// Further months: 1 or 2
        #[arg(long, default_value_t = crate::request::MAX_EXTENSION_MONTHS)]
        months: u32,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Check the ledger's hash chain end to end, and the certificates' anchors in it
    Verify,
}

/// The config's ledger, opened, if it exists: a SQLite file not yet
/// created is no ledger yet (nothing recorded), for the listing commands.
pub(crate) async fn existing_ledger(
    args: &crate::config::Args,
) -> Result<Option<crate::ledger::Ledger>, Failure> {
    let settings = resolve_settings(args)?;
    if let Some(path) = crate::ledger::sqlite_path(&settings.database)
        && !path.exists()
    {
        return Ok(None);
    }
    crate::ledger::Ledger::open(&settings.database)
        .await
        .context("cannot open the ledger")
        .or_exit(Exit::Runtime)
        .map(Some)
}

/// A usage error (exit 2) saying `message`.
pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::Usage,
        error: anyhow::anyhow!(message.into()),
    }
}

/// A required text argument, trimmed; empty is a usage error.
pub(crate) fn required(name: &str, value: &str) -> Result<String, Failure> {
    let v = value.trim();
    if v.is_empty() {
        Err(usage(format!("--{name} must not be empty")))
    } else {
        Ok(v.to_string())
    }
}

/// Threads for blocking work: the local walk, sidecar reads and deletes
/// in a local folder, file I/O. Tokio's default is 512, and an idle one
/// lives 10 s: a daemon whose passes come closer than that keeps waking
/// idle threads in turn and starting new ones pass after pass (in
/// `tests/it/longlife.rs`, 9 threads became 39 over 100 passes, resident
/// memory growing with them by 8 MiB). A pass's blocking work is a walk,
/// up to 16 sidecar reads (`plan::SCAN_CONCURRENCY`) and 4 delete threads,
/// none waiting on another blocking task but the walk (on its async
/// reader); beyond the bound, work waits in tokio's queue.
const MAX_BLOCKING_THREADS: usize = 16;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    // The demo narrates on stdout; its logs would only interleave with that.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    let json_logs = init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Runtime as u8);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = runtime.block_on(dispatch(cli, &mut out));
    let flushed = out.flush();
    let code = match result {
        Ok(code) => code,
        // A closed output pipe is not an error worth a message.
        Err(f) if f.exit == Exit::Success => Exit::Success,
        Err(f) => {
            // With JSON logs stderr is JSON lines only: the error is the event below.
            if !json_logs || !tracing::enabled!(tracing::Level::ERROR) {
                eprintln!("error: {}", chain(&f.error));
            }
            tracing::error!(
                error = chain(&f.error),
                exit_code = f.exit as u8,
                "command failed"
            );
            f.exit
        }
    };
    if let Err(e) = flushed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write the output: {e}");
        return ExitCode::from(Exit::Runtime as u8);
    }
    ExitCode::from(code as u8)
}

async fn dispatch(cli: Cli, out: &mut dyn Write) -> Outcome {
    let args = config::Args {
        config: cli.config.clone(),
    };
    match cli.command {
        Command::Plan {
            as_of,
            format,
            out: plan_file,
        } => plan::plan(&args, as_of.as_deref(), format, plan_file.as_deref(), out).await,
        Command::Run(options) => run::retention(&args, options, out).await,
        Command::Proof { cert, key, store } => {
            verify::proof(&cert, &key, store.as_deref(), &args, out).await
        }
        Command::Verify {
            cert,
            public_key,
            check_store,
            proof,
            allow_missing_previous,
        } => {
            verify::verify(
                &cert,
                verify::Options {
                    public_key: public_key.as_deref(),
                    check_store,
                    proof: proof.as_deref(),
                    allow_missing_previous,
                },
                &args,
                out,
            )
            .await
        }
        Command::Ledger {
            command: LedgerCommand::Verify,
        } => verify::ledger_verify(&args, out).await,
        Command::Erase {
            subject,
            request,
            received,
            dry_run,
        } => run::erase(&args, &subject, &request, received.as_deref(), dry_run, out).await,
        Command::Requests { command } => match command {
            RequestsCommand::Open {
                kind,
                subject,
                request,
                by,
                received,
            } => {
                let opening = requests::Opening {
                    kind,
                    subject: &subject,
                    request: &request,
                    by: &by,
                    received: received.as_deref(),
                };
                requests::open(&args, opening, out).await
            }
            RequestsCommand::List { all, format } => requests::list(&args, all, format, out).await,
            RequestsCommand::Extend {
                request,
                by,
                reason,
                months,
            } => requests::extend(&args, &request, &by, &reason, months, out).await,
        },
        Command::Hold { command } => hold::dispatch(&args, command, out).await,
        Command::Keygen { out: path } => keygen(&path, out),
        Command::Demo { dir } => demo::demo(&dir, out).await,
        Command::Daemon => daemon::daemon(&args, out).await,
    }
}

/// Sets up logging on stderr; returns whether its lines are JSON.
fn init_logging(format: LogFormat, default_level: &str) -> bool {
    let filter = EnvFilter::try_from_env("LETHE_LOG")
        // sqlx reports PostgreSQL notices and slow statements at info, and the
        // scheduler its own start-up: noise for operators.
        .unwrap_or_else(|_| {
            EnvFilter::new(format!(
                "{default_level},sqlx=warn,tokio_cron_scheduler=warn"
            ))
        });
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    progress::enable(terminal && !json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_target(false).with_ansi(terminal).init();
    }
    json
}

/// The settings a command runs with: the config file `args` or the
/// environment names, read and checked (exit 2 on any problem).
pub(crate) fn resolve_settings(args: &config::Args) -> Result<Settings, Failure> {
    Settings::resolve(args, &EnvOverrides::from_process()).or_exit(Exit::Usage)
}

/// A pass that could not start or go on, with the exit code its kind gives.
pub(crate) fn pass_failure(e: crate::pass::PassError) -> Failure {
    use crate::pass::ErrorKind;
    let exit = match e.kind() {
        ErrorKind::Refused => Exit::Usage,
        ErrorKind::Unavailable => Exit::Runtime,
        ErrorKind::Unsafe => Exit::Safety,
    };
    Failure {
        exit,
        error: anyhow::Error::new(e),
    }
}

/// Reads and validates the policies against the configured stores (exit 2).
pub(crate) fn load_policy(settings: &Settings) -> Result<Policy, Failure> {
    crate::pass::load_policy(settings).map_err(pass_failure)
}

fn keygen(path: &Path, out: &mut dyn Write) -> Outcome {
    let key = crate::certificate::dsse::generate()
        .map_err(|e| anyhow::anyhow!("no randomness available: {e}"))
        .or_exit(Exit::Runtime)?;
    let public = crate::certificate::dsse::write_key_pair(path, &key).or_exit(Exit::Usage)?;
    writeln!(
        out,
        "private key: {} (mode 0600; keep it secret)",
        path.display()
    )
    .context("cannot write output")
    .or_exit(Exit::Runtime)?;
    writeln!(out, "public key:  {}", public.display())
        .context("cannot write output")
        .or_exit(Exit::Runtime)?;
    Ok(Exit::Success)
}

/// A flag that SIGTERM or Ctrl-C sets: the run finishes the batch in
/// progress, records itself as interrupted, and certifies what it did.
pub(crate) fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("stop requested: finishing the batch in progress, then stopping");
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    stop
}

/// An error and its causes on one line, as `{:#}` prints them, less the
/// causes whose text the one before already contains (sqlx and the key
/// loader repeat their source in their own message): each said once.
pub(crate) fn chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Output errors: a closed pipe (`lethe plan | head`) ends the command quietly.
pub(crate) fn output_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure {
            exit: Exit::Success,
            error: anyhow::anyhow!("output closed"),
        }
    } else {
        Failure {
            exit: Exit::Runtime,
            error: anyhow::Error::new(e).context("cannot write the output"),
        }
    }
}
