//! What a ledger row says: the [`Event`] enum, one variant per row kind,
//! with the body types each kind is written with. This is the one place a
//! row's kind string, body JSON, store, key and reference are decided, so a
//! new kind of row touches this module (and the one that writes it). Bodies
//! serialise to exactly the JSON earlier releases wrote (field names, nulls
//! where a field was null, integers as integers), so that every ledger and
//! certificate already issued keeps verifying: the chain hashes the
//! canonical form of these bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::NewRow;
use crate::decide::StoreStats;
use crate::execute::{Intent, Outcome};
use crate::hold::Hold;

/// The kind of a ledger row, as its `kind` column spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    RunStarted,
    Intent,
    Outcome,
    RunFinished,
    Certificate,
    HoldPlaced,
    HoldReleased,
    HoldReleaseRequested,
    HoldReleaseApproved,
    ErasureRequested,
    /// A shard's plan counts, for the limits of its whole pass.
    ShardPlanned,
    /// A data subject's request registered, with when it was received.
    RequestOpened,
    /// A request's deadline extended (Art. 12(3)).
    RequestExtended,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::RunStarted,
        Kind::Intent,
        Kind::Outcome,
        Kind::RunFinished,
        Kind::Certificate,
        Kind::HoldPlaced,
        Kind::HoldReleased,
        Kind::HoldReleaseRequested,
        Kind::HoldReleaseApproved,
        Kind::ErasureRequested,
        Kind::ShardPlanned,
        Kind::RequestOpened,
        Kind::RequestExtended,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::RunStarted => "run-started",
            Kind::Intent => "intent",
            Kind::Outcome => "outcome",
            Kind::RunFinished => "run-finished",
            Kind::Certificate => "certificate",
            Kind::HoldPlaced => "hold-placed",
            Kind::HoldReleased => "hold-released",
            Kind::HoldReleaseRequested => "hold-release-requested",
            Kind::HoldReleaseApproved => "hold-release-approved",
            Kind::ErasureRequested => "erasure-requested",
            Kind::ShardPlanned => "shard-planned",
            Kind::RequestOpened => "request-opened",
            Kind::RequestExtended => "request-extended",
        }
    }

    /// The kind a `kind` column names, if it is one lethe writes.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ledger row's content: its kind and body, and the store, key and
/// referenced row that go in columns of their own.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    RunStarted(RunStarted),
    RunFinished(RunFinished),
    /// What one shard of a pass plans to delete.
    ShardPlanned(ShardPlan),
    /// The intent to delete one object, recorded before the delete is sent.
    Intent(Intent),
    Outcome(OutcomeBody),
    Certificate(CertificateRecord),
    HoldPlaced(Hold),
    /// A release that waits for other people's approval; `placed_seq` is the
    /// row that placed the hold.
    HoldReleaseRequested {
        placed_seq: i64,
        request: ReleaseRequest,
    },
    HoldReleaseApproved {
        placed_seq: i64,
        approval: ReleaseApproval,
    },
    HoldReleased {
        placed_seq: i64,
        release: Release,
    },
    ErasureRequested(ErasureRequest),
    RequestOpened(RequestOpened),
    RequestExtended(RequestExtended),
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::RunStarted(_) => Kind::RunStarted,
            Event::RunFinished(_) => Kind::RunFinished,
            Event::ShardPlanned(_) => Kind::ShardPlanned,
            Event::Intent(_) => Kind::Intent,
            Event::Outcome(_) => Kind::Outcome,
            Event::Certificate(_) => Kind::Certificate,
            Event::HoldPlaced(_) => Kind::HoldPlaced,
            Event::HoldReleaseRequested { .. } => Kind::HoldReleaseRequested,
            Event::HoldReleaseApproved { .. } => Kind::HoldReleaseApproved,
            Event::HoldReleased { .. } => Kind::HoldReleased,
            Event::ErasureRequested(_) => Kind::ErasureRequested,
            Event::RequestOpened(_) => Kind::RequestOpened,
            Event::RequestExtended(_) => Kind::RequestExtended,
        }
    }

    /// The row's `store` column: the store of an object, or the one store a
    /// hold is limited to.
    pub fn store(&self) -> Option<&str> {
        match self {
            Event::Intent(i) => Some(&i.store),
            Event::Outcome(o) => Some(&o.intent.store),
            Event::HoldPlaced(h) => h.store.as_deref(),
            _ => None,
        }
    }

    /// The row's `object_key` column.
    pub fn key(&self) -> Option<&str> {
        match self {
            Event::Intent(i) => Some(&i.key),
            Event::Outcome(o) => Some(&o.intent.key),
            _ => None,
        }
    }

    /// The row's `ref_seq` column: the intent an outcome closes, the hold a
    /// release refers to.
    pub fn ref_seq(&self) -> Option<i64> {
        match self {
            Event::Outcome(o) => Some(o.outcome.intent),
            Event::HoldReleaseRequested { placed_seq, .. }
            | Event::HoldReleaseApproved { placed_seq, .. }
            | Event::HoldReleased { placed_seq, .. } => Some(*placed_seq),
            _ => None,
        }
    }

    /// The row's body as JSON (the chain stores its canonical form).
    pub fn body(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.canonical_body()?)
    }

    /// The row's body in canonical JSON, written straight from the event
    /// (no `Value` on the way): the bytes the chain stores and hashes.
    pub fn canonical_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        use crate::certificate::jcs::to_vec;
        match self {
            Event::RunStarted(b) => to_vec(b),
            Event::RunFinished(b) => to_vec(b),
            Event::ShardPlanned(b) => to_vec(b),
            Event::Intent(b) => to_vec(b),
            Event::Outcome(b) => to_vec(b),
            Event::Certificate(b) => to_vec(b),
            Event::HoldPlaced(b) => to_vec(b),
            Event::HoldReleaseRequested { request, .. } => to_vec(request),
            Event::HoldReleaseApproved { approval, .. } => to_vec(approval),
            Event::HoldReleased { release, .. } => to_vec(release),
            Event::ErasureRequested(b) => to_vec(b),
            Event::RequestOpened(b) => to_vec(b),
            Event::RequestExtended(b) => to_vec(b),
        }
    }

    /// The row to append for this event in `run_id`.
    pub(super) fn to_row(&self, run_id: &str) -> Result<NewRow, serde_json::Error> {
        Ok(NewRow {
            kind: self.kind(),
            run_id: run_id.to_string(),
            store: self.store().map(str::to_string),
            key: self.key().map(str::to_string),
            ref_seq: self.ref_seq(),
            body: String::from_utf8(self.canonical_body()?)
                .map_err(<serde_json::Error as serde::ser::Error>::custom)?,
        })
    }

    /// Reads a stored row's event back from its kind, reference and body.
    /// `Err` says why it cannot be one (an unknown kind, a body of another
    /// shape, a release without the hold it refers to).
    pub fn decode(kind: &str, ref_seq: Option<i64>, body: &str) -> Result<Event, String> {
        let kind = Kind::parse(kind).ok_or_else(|| format!("unknown row kind {kind:?}"))?;
        fn parse<T: serde::de::DeserializeOwned>(kind: Kind, body: &str) -> Result<T, String> {
            serde_json::from_str(body).map_err(|e| format!("not a {kind} row: {e}"))
        }
        let placed_seq =
            || ref_seq.ok_or_else(|| format!("a {kind} row without the hold it refers to"));
        Ok(match kind {
            Kind::RunStarted => Event::RunStarted(parse(kind, body)?),
            Kind::RunFinished => Event::RunFinished(parse(kind, body)?),
            Kind::ShardPlanned => Event::ShardPlanned(parse(kind, body)?),
            Kind::Intent => Event::Intent(parse(kind, body)?),
            Kind::Outcome => Event::Outcome(parse(kind, body)?),
            Kind::Certificate => Event::Certificate(parse(kind, body)?),
            Kind::HoldPlaced => Event::HoldPlaced(parse(kind, body)?),
            Kind::HoldReleaseRequested => Event::HoldReleaseRequested {
                placed_seq: placed_seq()?,
                request: parse(kind, body)?,
            },
            Kind::HoldReleaseApproved => Event::HoldReleaseApproved {
                placed_seq: placed_seq()?,
                approval: parse(kind, body)?,
            },
            Kind::HoldReleased => Event::HoldReleased {
                placed_seq: placed_seq()?,
                release: parse(kind, body)?,
            },
            Kind::ErasureRequested => Event::ErasureRequested(parse(kind, body)?),
            Kind::RequestOpened => Event::RequestOpened(parse(kind, body)?),
            Kind::RequestExtended => Event::RequestExtended(parse(kind, body)?),
        })
    }
}

/// Timestamps written as [`timestamp`](super::timestamp) writes them: RFC
/// 3339 in UTC, to the millisecond.
mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::super::timestamp(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(D::Error::custom)
    }
}

/// What a pass was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// The scheduled retention pass (or one shard of it).
    Retention,
    /// A data subject's erasure request carried out.
    Erasure,
}

/// The tool that wrote a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    /// This build of lethe.
    pub fn lethe() -> Self {
        Self {
            name: "lethe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A policy file a run applied, by its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub file: String,
    pub sha256: String,
}

/// A store a run covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRef {
    pub name: String,
    pub url: String,
}

/// The body of a `run-started` row. `approved_plan_sha256` and `shard` are
/// written as null when absent; rows of releases before them lack them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStarted {
    #[serde(with = "millis")]
    pub started_at: DateTime<Utc>,
    pub purpose: Purpose,
    #[serde(default)]
    pub approved_plan_sha256: Option<String>,
    /// `I/N` for one shard of a split pass.
    #[serde(default)]
    pub shard: Option<String>,
    pub tool: Tool,
    pub policies: Vec<PolicyRef>,
    pub stores: Vec<StoreRef>,
}

/// How a run ended, as `run-finished` rows and certificates spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Completed,
    CompletedWithFailures,
    Failed,
    Interrupted,
    StoppedBySafetyLimit,
}

impl RunStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::CompletedWithFailures => "completed-with-failures",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::StoppedBySafetyLimit => "stopped-by-safety-limit",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One store's part of a `run-finished` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreFinished {
    pub name: String,
    /// Why the store could not be planned or executed (null when it could).
    pub error: Option<String>,
    /// The plan's counts (null when it could not be planned).
    pub planned: Option<StoreStats>,
    pub recordings_deleted: u64,
    pub objects_deleted: u64,
    pub failed: u64,
}

/// The body of a `run-finished` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    #[serde(with = "millis")]
    pub finished_at: DateTime<Utc>,
    pub status: RunStatus,
    pub safety_breaches: Vec<String>,
    pub stores: Vec<StoreFinished>,
}

/// What one shard of a pass plans to delete, store by store: the shards of
/// a pass add these up and check the safety limits on the sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    pub pass: String,
    pub shard: u32,
    pub of: u32,
    /// Store name -> (deletions, recordings) planned by this shard.
    pub stores: BTreeMap<String, (u64, u64)>,
}

/// The body of an outcome row: the intent it closes, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeBody {
    pub intent: Intent,
    pub outcome: Outcome,
}

/// The body of a `certificate` row. The ledger comes before the
/// certificate in the pipeline, so the signed payload is opaque here
/// (`P` is `certificate::Payload` for the code that issues certificates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateRecord<P = Value> {
    pub sequence: u64,
    pub certificate_file: String,
    pub certificate_sha256: String,
    pub manifest_file: String,
    pub manifest_sha256: String,
    pub payload: P,
}

/// A hold's release as recorded (with its approvals, when more than one
/// person had to agree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub case: String,
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    /// The other people who approved the release (when more than one must agree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
}

/// A release asked for but not yet approved by enough people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    pub approved_by: Vec<String>,
}

/// One person's approval of a requested release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseApproval {
    pub case: String,
    pub by: String,
    #[serde(with = "millis")]
    pub at: DateTime<Utc>,
}

/// The body of an `erasure-requested` row: the request and the SHA-256 of
/// the subject's id (never the id itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub request: String,
    pub subject_sha256: String,
    #[serde(with = "millis")]
    pub at: DateTime<Utc>,
}

/// A data subject's request registered: by whom, and when it was received
/// (Art. 12(3) counts from then). The subject only by the SHA-256 of its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOpened {
    pub request: String,
    pub kind: crate::request::RequestKind,
    pub subject_sha256: String,
    #[serde(with = "millis")]
    pub received: DateTime<Utc>,
    /// Who registered it; none when it was answered without being
    /// registered first (the answering command registered it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A request's one extension (Art. 12(3): up to two further months).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestExtended {
    pub request: String,
    pub months: u32,
    pub by: String,
    pub reason: String,
    #[serde(with = "millis")]
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests;
