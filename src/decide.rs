//! Decisions: keep (until when, and why), delete (which purpose expired), or
//! report (kept, because something could not be established).
//!
//! [`decide`] is a pure function of the recording, the policy and `now`: it
//! never reads the clock, so a plan "as of" any date is the same computation
//! as a run today. A recording expires at the latest end over all its
//! purposes, each end being `recorded_at + max(retain, minimum)` on the
//! policy's calendar (to the end of that day when the date has no time). Anything dated in the future is kept and reported. The
//! safety limits on a whole plan live here too.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::classify::{Classified, Recording, end_of_day};
use crate::config::Safety;
use crate::hold::{self, Hold, HoldTarget};
use crate::policy::Policy;
use crate::policy::duration::CalendarDuration;
use crate::store::ObjectRef;

/// Why a recording may go, or until when it stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// `None`: beyond any representable date (never).
    pub at: Option<DateTime<Utc>>,
    /// The purpose whose period ends last.
    pub purpose: String,
    pub retain: String,
    pub minimum: Option<String>,
    pub basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delete(Expiry),
    Keep(Expiry),
    /// Covered by an active legal hold: kept whatever its retention says.
    Held {
        case: String,
        expiry: Expiry,
    },
    /// Recorded after `now`: a clock or naming error; never deleted.
    FutureDated,
}

/// Decides one recording. Every purpose must be defined (classification
/// guarantees it); an undefined one keeps the recording forever.
/// The legal orders in force when deciding: holds, and erasure requests.
#[derive(Debug, Clone, Default)]
pub struct Orders {
    pub holds: Vec<Hold>,
    /// SHA-256 (hex) of each subject whose erasure was requested → the request id.
    pub erasures: HashMap<String, String>,
    /// Plan only the recordings of this subject (digest): an erasure being carried out.
    pub only_subject: Option<String>,
    /// The register of data subjects' requests, for the notices of late ones.
    pub requests: Vec<crate::request::Request>,
}

impl Orders {
    pub fn with_holds(holds: Vec<Hold>) -> Self {
        Self {
            holds,
            ..Self::default()
        }
    }
}

/// A deterministic share of the recordings (`--shard I/N`): a recording
/// belongs to shard `hash(store, key) mod N`, so that N processes (an Indexed
/// Job) split a store without coordinating, each object in exactly one share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let err = || {
            format!(
                "--shard {text:?}: expected I/N with 0 <= I < N, e.g. 0/4 (an Indexed Job's JOB_COMPLETION_INDEX)"
            )
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(err)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| err())?,
            n.trim().parse().map_err(|_| err())?,
        );
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Self { index, count })
    }

    pub fn owns(&self, store: &str, key: &str) -> bool {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(store.as_bytes());
        h.update([0u8]);
        h.update(key.as_bytes());
        let digest = h.finalize();
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        n % u64::from(self.count) == u64::from(self.index)
    }

    /// Shards of one split run side by side, each under its own lease.
    pub fn lease_name(&self) -> String {
        format!("retention/shard-{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The end of a `minimum` obligation still in force, if any.
fn minimum_in_force(recording: &Recording, policy: &Policy, now: DateTime<Utc>) -> Option<Expiry> {
    recording
        .purposes
        .iter()
        .filter_map(|name| {
            let p = policy.purpose(name)?;
            let end = period_end(&p.minimum?, recording);
            // An end beyond representable dates is "never": in force.
            (end.is_none_or(|end| end > now)).then(|| Expiry {
                at: end,
                purpose: p.name.clone(),
                retain: p.minimum_text.clone().unwrap_or_default(),
                minimum: p.minimum_text.clone(),
                basis: format!(
                    "GDPR Art. 17(3)(b): legal obligation to keep it ({})",
                    p.basis
                ),
            })
        })
        .max_by_key(|e| e.at.unwrap_or(DateTime::<Utc>::MAX_UTC))
}

pub fn decide(
    recording: &Recording,
    store: &str,
    policy: &Policy,
    orders: &Orders,
    now: DateTime<Utc>,
) -> Decision {
    let holds = &orders.holds;
    if recording.recorded_at > now {
        return Decision::FutureDated;
    }
    let expiry = governing_expiry(recording, policy);
    let target = HoldTarget {
        store: store.to_string(),
        key: recording.object.location.to_string(),
        subject: recording.subject.clone(),
        call_id: recording.call_id.clone(),
        recorded_at: recording.recorded_at,
        timezone: recording.timezone,
        objects: recording
            .sidecars
            .iter()
            .map(|s| s.location.to_string())
            .chain(recording.companions.iter().cloned())
            .collect(),
    };
    if let Some(hold) = hold::covering(holds, &target) {
        return Decision::Held {
            case: hold.case.clone(),
            expiry,
        };
    }
    // An erased subject's recordings go now, whatever their retention, unless
    // a hold (above) or a legal obligation to keep them protects them.
    if let Some(request) = recording
        .subject
        .as_deref()
        .and_then(|s| orders.erasures.get(&hold::subject_digest(s)))
    {
        return match minimum_in_force(recording, policy, now) {
            Some(obligation) => Decision::Keep(obligation),
            None => Decision::Delete(Expiry {
                at: Some(now),
                purpose: ERASURE.into(),
                retain: "erasure request".into(),
                minimum: None,
                basis: format!("GDPR Art. 17(1): erasure request {request}"),
            }),
        };
    }
    if expiry.at.is_some_and(|at| at <= now) {
        Decision::Delete(expiry)
    } else {
        Decision::Keep(expiry)
    }
}

/// The purpose name deletions for an erasure request carry.
pub const ERASURE: &str = "erasure";

/// Where a period of the recording ends on its calendar (`None`: never). A
/// recording dated without a time may have been made at any hour of its day,
/// so the period ends at the end of the day it falls on (the day of the event
/// is not counted, Regulation 1182/71 Art. 3).
fn period_end(period: &CalendarDuration, recording: &Recording) -> Option<DateTime<Utc>> {
    let end = period.add_to(recording.recorded_at, recording.timezone)?;
    Some(if recording.date_only {
        end_of_day(end, recording.timezone)
    } else {
        end
    })
}

/// The purpose whose period ends last, and when.
fn governing_expiry(recording: &Recording, policy: &Policy) -> Expiry {
    let mut governing: Option<Expiry> = None;
    for name in &recording.purposes {
        let expiry = match policy.purpose(name) {
            Some(p) => {
                let retain_end = period_end(&p.retain, recording);
                let minimum_end = p.minimum.and_then(|m| period_end(&m, recording));
                let at = match (retain_end, p.minimum.map(|_| minimum_end)) {
                    (None, _) | (_, Some(None)) => None,
                    (Some(r), Some(Some(m))) => Some(r.max(m)),
                    (Some(r), None) => Some(r),
                };
                Expiry {
                    at,
                    purpose: p.name.clone(),
                    retain: p.retain_text.clone(),
                    minimum: p.minimum_text.clone(),
                    basis: p.basis.clone(),
                }
            }
            None => Expiry {
                at: None,
                purpose: name.clone(),
                retain: "undefined".into(),
                minimum: None,
                basis: "purpose not defined by the policy".into(),
            },
        };
        let later = match &governing {
            None => true,
            Some(g) => match (g.at, expiry.at) {
                (_, None) => g.at.is_some(),
                (None, Some(_)) => false,
                (Some(a), Some(b)) => b > a,
            },
        };
        if later {
            governing = Some(expiry);
        }
    }
    governing.unwrap_or(Expiry {
        at: None,
        purpose: String::new(),
        retain: String::new(),
        minimum: None,
        basis: "no purpose".into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Delete,
    Keep,
    /// Kept by a legal hold.
    Hold,
    /// Kept because something could not be established; needs a human.
    Report,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Keep => "keep",
            Action::Hold => "hold",
            Action::Report => "report",
        }
    }
}

/// One line of a plan: what happens to one object and why. Delete items are
/// also what a run hands to the executor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Planned {
    pub store: String,
    pub key: String,
    pub action: Action,
    /// `expired`, `retained`, `future-dated`, or an unclassified reason code.
    pub code: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purposes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<ObjectRef>,
    /// Companion keys, as the rule's templates render them; deleted with
    /// the recording when present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<String>,
    /// Of a deletion's `companions`, those the scan's listing showed, with
    /// what it said of them: the companions it deletes (see
    /// [`crate::claims`]). `None` until the store's claims are resolved
    /// (items that stay, plans of earlier releases): a deletion without it
    /// deletes no companion and is not carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion_objects: Option<Vec<ObjectRef>>,
    /// Facts that holds and erasure requests select on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Tz>,
    /// The case of the hold that keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Sidecars and companions this deletion leaves, because something else
    /// still claims them (see [`crate::claims`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptObject>,
}

/// An object a deletion leaves in place, and the claim that keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeptObject {
    pub key: String,
    pub claim: String,
}

impl Planned {
    /// The facts a hold is matched against (`None` for objects that are not recordings).
    pub fn hold_target(&self) -> Option<HoldTarget> {
        Some(HoldTarget {
            store: self.store.clone(),
            key: self.key.clone(),
            subject: self.subject.clone(),
            call_id: self.call_id.clone(),
            recorded_at: self.recorded_at?,
            timezone: self.timezone.unwrap_or(Tz::UTC),
            objects: self.objects().skip(1).map(str::to_string).collect(),
        })
    }

    /// The objects this item names, numbered as [`crate::claims::Part`]s:
    /// the item's own key, its sidecars, then its companions.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.key.as_str())
            .chain(self.sidecars.iter().map(|s| s.key.as_str()))
            .chain(self.companions.iter().map(String::as_str))
    }

    /// The companion key object `part` of [`Planned::objects`] is, if it is
    /// one (not the item's own key or a sidecar).
    pub fn companion_at(&self, part: usize) -> Option<&String> {
        self.companions
            .get(part.checked_sub(1 + self.sidecars.len())?)
    }
}

/// Turns a classified object into a plan item (`None` for owned objects,
/// which are planned with their recording). While an erasure is carried out
/// (`orders.only_subject`), only the subject's objects are planned.
pub fn plan_item(
    store: &str,
    classified: Classified,
    policy: &Policy,
    orders: &Orders,
    now: DateTime<Utc>,
) -> Option<Planned> {
    let item = any_item(store, classified, policy, orders, now)?;
    in_scope(&item, orders).then_some(item)
}

/// Whether an item is planned by the pass the orders describe: every item,
/// or during an erasure only those that name the subject (its recordings,
/// and what could not be classified but names it).
pub fn in_scope(item: &Planned, orders: &Orders) -> bool {
    match &orders.only_subject {
        None => true,
        Some(only) => item
            .subject
            .as_deref()
            .is_some_and(|s| hold::subject_digest(s) == *only),
    }
}

/// The plan item of any classified object, in scope or not: what is out of
/// an erasure's scope still claims its objects (see [`crate::claims`]).
pub fn any_item(
    store: &str,
    classified: Classified,
    policy: &Policy,
    orders: &Orders,
    now: DateTime<Utc>,
) -> Option<Planned> {
    match classified {
        Classified::Owned(_) => None,
        Classified::Unclassified(u) => Some(Planned {
            store: store.to_string(),
            key: u.key,
            action: Action::Report,
            code: u.reason.code().to_string(),
            reason: format!("kept: {}", u.reason.describe()),
            object: u.object.as_ref().map(ObjectRef::from),
            rules: u.rules,
            purposes: vec![],
            recorded_at: None,
            recorded_from: None,
            expires_at: None,
            purpose: None,
            retain: None,
            basis: None,
            sidecars: vec![],
            companions: u.owns,
            companion_objects: None,
            subject: u.subject,
            call_id: None,
            timezone: None,
            hold: None,
            kept: vec![],
        }),
        Classified::Recording(r) => {
            let decision = decide(&r, store, policy, orders, now);
            Some(recording_item(store, r, decision))
        }
    }
}

fn recording_item(store: &str, r: Recording, decision: Decision) -> Planned {
    let mut hold = None;
    let (action, code, reason, expiry) = match decision {
        Decision::Held { case, expiry } => {
            let reason = match expiry.at {
                Some(at) if expiry.purpose.is_empty() => format!(
                    "kept: legal hold {case} (retention until {})",
                    fmt_time(Some(at))
                ),
                at => format!(
                    "kept: legal hold {case} (retention of {} ends {})",
                    expiry.purpose,
                    fmt_time(at)
                ),
            };
            hold = Some(case);
            (Action::Hold, "held", reason, Some(expiry))
        }
        Decision::Delete(e) => {
            let reason = format!(
                "{} expired {} ({} retention)",
                e.purpose,
                fmt_time(e.at),
                e.retain
            );
            (Action::Delete, "expired", reason, Some(e))
        }
        Decision::Keep(e) => {
            let reason = match e.at {
                Some(at) => format!(
                    "kept until {} for {} ({})",
                    fmt_time(Some(at)),
                    e.purpose,
                    e.retain
                ),
                None => format!(
                    "kept: the retention of {} ends beyond any representable date",
                    e.purpose
                ),
            };
            (Action::Keep, "retained", reason, Some(e))
        }
        Decision::FutureDated => (
            Action::Report,
            "future-dated",
            format!(
                "kept: recorded in the future ({}, from the {})",
                fmt_time(Some(r.recorded_at)),
                r.recorded_from.as_str()
            ),
            None,
        ),
    };
    let counted_by_calendar = expiry
        .as_ref()
        .is_some_and(|e| e.purpose != ERASURE && e.at.is_some());
    let reason = if r.date_only && counted_by_calendar {
        format!(
            "{reason}; counted to the end of the day, as {} ({}) has no time of day in the {}",
            r.recorded_at.with_timezone(&r.timezone).date_naive(),
            r.timezone,
            r.recorded_from.as_str()
        )
    } else {
        reason
    };
    Planned {
        store: store.to_string(),
        key: r.object.location.to_string(),
        action,
        code: code.to_string(),
        reason,
        object: Some(ObjectRef::from(&r.object)),
        rules: r.rules,
        purposes: r.purposes,
        recorded_at: Some(r.recorded_at),
        recorded_from: Some(r.recorded_from.as_str().to_string()),
        expires_at: expiry.as_ref().and_then(|e| e.at),
        purpose: expiry.as_ref().map(|e| e.purpose.clone()),
        retain: expiry.as_ref().map(|e| e.retain.clone()),
        basis: expiry.map(|e| e.basis),
        sidecars: r.sidecars.iter().map(ObjectRef::from).collect(),
        companions: r.companions,
        companion_objects: None,
        subject: r.subject,
        call_id: r.call_id,
        timezone: Some(r.timezone),
        hold,
        kept: vec![],
    }
}

/// A timestamp as plans and manifests print it: RFC 3339, UTC, seconds.
pub fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => "never".into(),
    }
}

/// Counts for one store's plan. They are recorded in the ledger's
/// `run-finished` row; a row written by an older lethe may lack a count,
/// which then reads as zero.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoreStats {
    /// Every listing entry, owned objects and problems included.
    pub listed: u64,
    /// Objects that a rule matched (the denominator of `max_fraction`).
    pub recordings: u64,
    /// Sidecars and companions seen in the listing.
    pub owned: u64,
    pub delete: u64,
    /// Bytes of the recordings and sidecars to delete (companions are sized at deletion).
    pub delete_bytes: u64,
    pub keep: u64,
    /// Recordings kept by a legal hold.
    pub held: u64,
    pub report: u64,
    pub delete_by_purpose: BTreeMap<String, u64>,
    pub held_by_case: BTreeMap<String, u64>,
    pub keep_by_purpose: BTreeMap<String, u64>,
    pub report_by_code: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<DateTime<Utc>>,
}

impl StoreStats {
    pub fn count_owned(&mut self) {
        self.listed += 1;
        self.owned += 1;
    }

    pub fn count(&mut self, item: &Planned) {
        self.listed += 1;
        if !item.rules.is_empty() {
            self.recordings += 1;
        }
        let purpose = item.purpose.clone().unwrap_or_default();
        match item.action {
            Action::Delete => {
                self.delete += 1;
                self.delete_bytes += item.object.as_ref().map_or(0, |o| o.size)
                    + item.sidecars.iter().map(|s| s.size).sum::<u64>();
                *self.delete_by_purpose.entry(purpose).or_default() += 1;
            }
            Action::Keep => {
                self.keep += 1;
                *self.keep_by_purpose.entry(purpose).or_default() += 1;
                if let Some(at) = item.expires_at {
                    self.next_expiry = Some(self.next_expiry.map_or(at, |n| n.min(at)));
                }
            }
            Action::Hold => {
                self.held += 1;
                *self
                    .held_by_case
                    .entry(item.hold.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            Action::Report => {
                self.report += 1;
                *self.report_by_code.entry(item.code.clone()).or_default() += 1;
            }
        }
    }
}

/// Checks a plan against the configured limits; returns one message per
/// limit exceeded (empty: the run may proceed).
pub fn check_safety<'a>(
    stores: impl IntoIterator<Item = (&'a str, &'a StoreStats)>,
    safety: Safety,
) -> Vec<String> {
    let mut breaches = Vec::new();
    let mut total = 0u64;
    for (name, stats) in stores {
        total += stats.delete;
        if stats.recordings > 0 {
            let fraction = stats.delete as f64 / stats.recordings as f64;
            if fraction > safety.max_fraction {
                breaches.push(format!(
                    "store {name}: {} of {} recordings ({:.1}%) would be deleted, more than max_fraction = {}",
                    stats.delete,
                    stats.recordings,
                    fraction * 100.0,
                    safety.max_fraction
                ));
            }
        }
    }
    if total > safety.max_deletions {
        breaches.insert(
            0,
            format!(
                "{total} recordings would be deleted, more than max_deletions = {}",
                safety.max_deletions
            ),
        );
    }
    breaches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::DateSource;
    use chrono::TimeZone;
    use chrono_tz::Tz;
    use object_store::ObjectMeta;
    use std::path::PathBuf;

    const POLICY: &str = r#"
purposes:
  quality:  { retain: 6 months,  basis: "GDPR Art. 6(1)(f)" }
  disputes: { retain: 24 months, basis: "GDPR Art. 17(3)(e)" }
  orders:   { retain: 5 years, minimum: 5 years, basis: "MiFID II Art. 16(7)" }
recordings:
  - { name: r, store: s, match: "{purpose}/{call_id}" }
"#;

    fn policy() -> Policy {
        Policy::from_sources(vec![(
            "p.yaml".into(),
            PathBuf::from("p.yaml"),
            POLICY.as_bytes().to_vec(),
        )])
        .unwrap()
    }

    fn rec(purposes: &[&str], recorded: DateTime<Utc>) -> Recording {
        Recording {
            object: ObjectMeta {
                location: "a/b".into(),
                last_modified: recorded,
                size: 1,
                e_tag: None,
                version: None,
            },
            rules: vec!["r".into()],
            purposes: purposes.iter().map(|s| s.to_string()).collect(),
            recorded_at: recorded,
            recorded_from: DateSource::Key,
            date_only: false,
            timezone: Tz::UTC,
            subject: None,
            call_id: None,
            sidecars: vec![],
            companions: vec![],
        }
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn expires_on_the_calendar_date_not_a_day_before() {
        let p = policy();
        let r = rec(&["quality"], day(2025, 5, 31));
        assert!(
            matches!(decide(&r, "s", &p, &Orders::default(), day(2025, 11, 29)), Decision::Keep(e) if e.at == Some(day(2025, 11, 30)))
        );
        assert!(
            matches!(decide(&r, "s", &p, &Orders::default(), day(2025, 11, 30)), Decision::Delete(e) if e.purpose == "quality" && e.basis == "GDPR Art. 6(1)(f)")
        );
    }

    #[test]
    fn the_latest_purpose_governs() {
        let p = policy();
        let r = rec(&["disputes", "quality"], day(2024, 1, 1));
        match decide(&r, "s", &p, &Orders::default(), day(2025, 6, 1)) {
            Decision::Keep(e) => assert_eq!(
                (e.purpose.as_str(), e.at),
                ("disputes", Some(day(2026, 1, 1)))
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(decide(&r, "s", &p, &Orders::default(), day(2026, 1, 1)), Decision::Delete(e) if e.purpose == "disputes")
        );
    }

    #[test]
    fn future_dated_is_never_deleted() {
        let p = policy();
        assert_eq!(
            decide(
                &rec(&["quality"], day(2030, 1, 1)),
                "s",
                &p,
                &Orders::default(),
                day(2026, 1, 1)
            ),
            Decision::FutureDated
        );
    }

    #[test]
    fn an_undefined_purpose_keeps_forever() {
        let p = policy();
        assert!(
            matches!(decide(&rec(&["quality", "zzz"], day(2000, 1, 1)), "s", &p, &Orders::default(), day(2026, 1, 1)), Decision::Keep(e) if e.at.is_none())
        );
    }

    #[test]
    fn a_hold_keeps_whatever_the_retention_says() {
        let p = policy();
        let hold = Hold {
            case: "CASE-1".into(),
            reason: "r".into(),
            placed_by: "j".into(),
            placed_at: day(2026, 1, 1),
            selectors: vec![crate::hold::Selector::Key { key: "a/b".into() }],
            store: None,
            review: None,
        };
        let expired = rec(&["quality"], day(2020, 1, 1));
        assert!(
            matches!(decide(&expired, "s", &p, &Orders::with_holds(vec![hold.clone()]), day(2026, 1, 1)), Decision::Held { case, .. } if case == "CASE-1")
        );
        // Another store's hold does not apply.
        let elsewhere = Hold {
            store: Some("other".into()),
            ..hold.clone()
        };
        assert!(matches!(
            decide(
                &expired,
                "s",
                &p,
                &Orders::with_holds(vec![elsewhere]),
                day(2026, 1, 1)
            ),
            Decision::Delete(_)
        ));
        // A future-dated recording is reported as such, held or not.
        assert_eq!(
            decide(
                &rec(&["quality"], day(2030, 1, 1)),
                "s",
                &p,
                &Orders::with_holds(vec![hold]),
                day(2026, 1, 1)
            ),
            Decision::FutureDated
        );
    }

    #[test]
    fn minimum_keeps_at_least_that_long() {
        let p = policy();
        let r = rec(&["orders"], day(2020, 2, 29));
        assert!(matches!(
            decide(&r, "s", &p, &Orders::default(), day(2025, 2, 27)),
            Decision::Keep(_)
        ));
        assert!(matches!(
            decide(&r, "s", &p, &Orders::default(), day(2025, 2, 28)),
            Decision::Delete(_)
        ));
    }

    #[test]
    fn a_date_without_a_time_counts_from_the_end_of_that_day() {
        let p = policy();
        let warsaw = Tz::Europe__Warsaw;
        let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        // days/mifid/2021-12-01/G.wav: local midnight of 1 December in Warsaw.
        let dated = Recording {
            timezone: warsaw,
            date_only: true,
            subject: Some("CUST-1".into()),
            ..rec(&["orders"], at(2021, 11, 30, 23))
        };
        // The call may have been made at 23:59 on 1 December 2021: five
        // years end with 1 December 2026, local time.
        match decide(&dated, "s", &p, &Orders::default(), at(2026, 11, 30, 23)) {
            Decision::Keep(e) => assert_eq!(e.at, Some(at(2026, 12, 1, 23))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&dated, "s", &p, &Orders::default(), at(2026, 12, 1, 23)),
            Decision::Delete(_)
        ));
        // The minimum that protects it from an erasure request too.
        let erasing = Orders {
            erasures: [(hold::subject_digest("CUST-1"), "DSR-1".to_string())].into(),
            ..Orders::default()
        };
        assert!(matches!(
            decide(&dated, "s", &p, &erasing, at(2026, 12, 1, 12)),
            Decision::Keep(e) if e.at == Some(at(2026, 12, 1, 23))
        ));
        // An instant (a time is known) counts from the instant.
        let timed = Recording {
            date_only: false,
            ..dated.clone()
        };
        assert!(matches!(
            decide(&timed, "s", &p, &Orders::default(), at(2026, 11, 30, 23)),
            Decision::Delete(_)
        ));
        // Thirty August plus six months: February has no thirtieth, so the
        // period ends with the last day of February (not a day before it).
        let august = Recording {
            date_only: true,
            ..rec(&["quality"], day(2025, 8, 30))
        };
        assert!(matches!(
            decide(&august, "s", &p, &Orders::default(), at(2026, 2, 28, 12)),
            Decision::Keep(e) if e.at == Some(day(2026, 3, 1))
        ));
        // The plan says how it counted.
        let item = plan_item(
            "s",
            Classified::Recording(dated),
            &p,
            &Orders::default(),
            at(2026, 1, 1, 0),
        )
        .unwrap();
        assert_eq!(
            item.reason,
            "kept until 2026-12-01T23:00:00Z for orders (5 years); counted to the end of the \
             day, as 2021-12-01 (Europe/Warsaw) has no time of day in the key"
        );
    }

    fn limits(max_deletions: u64, max_fraction: f64) -> Safety {
        Safety {
            max_deletions,
            max_fraction,
            max_clock_skew: std::time::Duration::from_secs(300),
            shard_wait: std::time::Duration::from_secs(600),
        }
    }

    #[test]
    fn shards_split_every_key_exactly_once() {
        let shards: Vec<Shard> = (0..4)
            .map(|i| Shard::parse(&format!("{i}/4")).unwrap())
            .collect();
        let mut per_shard = [0u32; 4];
        for k in 0..4000 {
            let key = format!("calls/quality/2025/01/01/C-{k}.wav");
            let owners: Vec<usize> = (0..4)
                .filter(|&i| shards[i].owns("recordings", &key))
                .collect();
            assert_eq!(owners.len(), 1, "{key}");
            per_shard[owners[0]] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 800), "{per_shard:?}");
        for bad in ["4/4", "1", "a/b", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Shard::parse(" 2 / 3 ").unwrap().lease_name(),
            "retention/shard-2-of-3"
        );
    }

    #[test]
    fn safety_limits() {
        let stats = StoreStats {
            recordings: 10,
            delete: 6,
            ..Default::default()
        };
        let b = check_safety([("s", &stats)], limits(100, 0.5));
        assert_eq!(b.len(), 1);
        assert!(b[0].contains("6 of 10 recordings (60.0%)"), "{b:?}");
        assert!(check_safety([("s", &stats)], limits(6, 0.6)).is_empty());
        let b = check_safety([("s", &stats)], limits(5, 1.0));
        assert!(b[0].contains("more than max_deletions = 5"), "{b:?}");
        assert!(check_safety([("s", &StoreStats::default())], limits(0, 0.0)).is_empty());
    }
}
