//! Why a pass could not start or could not go on. Every one of these ends a
//! pass before anything is deleted, or (a spool that cannot be read back)
//! with what was deleted so far recorded; a failure inside a store is not
//! an error but part of the [`super::RunOutcome`].

use crate::certificate::dsse::KeyError;
use crate::ledger::{LeaseError, LedgerError};
use crate::policy::PolicyErrors;

use super::certify::CertifyError;
use super::preflight::PreflightError;

/// What kind of failure it is, for the caller's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration, policy, key, store or request cannot be used as
    /// given: nothing was touched, and running again will not help.
    Refused,
    /// A service the pass needs (the database, the certificate
    /// destination, a temporary file) failed: running again may succeed.
    Unavailable,
    /// A safety check stopped the pass: nothing was deleted.
    Unsafe,
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Policy(#[from] PolicyErrors),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A store's deletion mode contradicts what lethe.toml asserts.
    #[error("{0}; nothing was deleted")]
    DeletionMode(String),
    /// The certificate destination holds certificates this ledger does not know.
    #[error("{0}")]
    ForeignDestination(String),
    /// An erasure request id already names another subject.
    #[error(transparent)]
    RequestReused(LedgerError),
    /// The request id is registered for another kind of request or subject.
    #[error("{0}")]
    RequestRefused(String),
    #[error("{context}")]
    Ledger {
        context: &'static str,
        source: LedgerError,
    },
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("{context}")]
    Certificates {
        context: &'static str,
        source: CertifyError,
    },
    /// The run cannot write the evidence of what it would delete (the
    /// certificate destination, the manifest staging folder, the signing
    /// key): found before anything was deleted or recovered.
    #[error("preflight: the run cannot write its evidence; nothing was deleted")]
    Preflight(#[source] PreflightError),
    #[error(
        "the ledger holds deletions of an interrupted run that no certificate covers yet; run `lethe run` first (it completes and certifies them), then repeat the erasure; nothing was deleted"
    )]
    Uncertified,
    #[error(
        "the legal holds and erasure requests in the ledger's index differ from its hash chain ({0}); nothing was deleted; run `lethe ledger verify` and restore the ledger from a backup"
    )]
    IndexDiffers(String),
    #[error("{context}")]
    Spool {
        context: &'static str,
        source: std::io::Error,
    },
    #[error(
        "this machine's clock differs from the database's by {skew_seconds} s, more than max_clock_skew ({max_seconds} s); nothing was deleted"
    )]
    ClockSkew { skew_seconds: i64, max_seconds: u64 },
}

impl PassError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PassError::Policy(_)
            | PassError::Key(_)
            | PassError::DeletionMode(_)
            | PassError::ForeignDestination(_)
            | PassError::RequestReused(_)
            | PassError::RequestRefused(_) => ErrorKind::Refused,
            PassError::ClockSkew { .. } => ErrorKind::Unsafe,
            PassError::Ledger { .. }
            | PassError::Lease(_)
            | PassError::Certificates { .. }
            | PassError::Preflight(_)
            | PassError::Uncertified
            | PassError::IndexDiffers(_)
            | PassError::Spool { .. } => ErrorKind::Unavailable,
        }
    }

    /// A ledger failure, said with what it means for the pass.
    pub(super) fn ledger(context: &'static str) -> impl FnOnce(LedgerError) -> Self {
        move |source| PassError::Ledger { context, source }
    }

    pub(super) fn spool(context: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| PassError::Spool { context, source }
    }
}
