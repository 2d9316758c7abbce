//! Classification: a scanned candidate becomes a recording with purposes and
//! a recording date, or an unclassified object with the reason why.
//!
//! Purposes are the union of the captured `{purpose}`, the rule's fixed
//! purposes and the sidecar's `purposes`, over every rule that matched. The
//! recording date comes from the key's `{recorded}` capture, else the sidecar's
//! `recorded_at`, else the object's last-modified time. Whatever cannot be
//! established with certainty (no rule, no purpose, an undefined purpose, an
//! unreadable date or sidecar) is unclassified: kept and reported, never
//! guessed. Pure: no clock, no I/O.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use object_store::ObjectMeta;
use serde::Deserialize;

use crate::policy::duration::resolve_local;
use crate::policy::{Policy, RuleMatch};
use crate::scan::{Candidate, Scanned, SidecarRead, SidecarState};

#[derive(Debug)]
pub enum Classified {
    Recording(Recording),
    Unclassified(Unclassified),
    /// A sidecar or companion seen in the listing.
    Owned(ObjectMeta),
}

#[derive(Debug, Clone)]
pub struct Recording {
    pub object: ObjectMeta,
    /// Names of the rules that matched, in policy order.
    pub rules: Vec<String>,
    /// Sorted, without duplicates, all defined by the policy.
    pub purposes: Vec<String>,
    /// A date without a time is its day's local midnight (holds match on
    /// its calendar date); see `date_only`.
    pub recorded_at: DateTime<Utc>,
    pub recorded_from: DateSource,
    /// The date has day precision (a key date format without a time, or a
    /// bare sidecar date): periods end at the end of the day they fall on,
    /// since the call may have been made at any hour of its day
    /// (Regulation 1182/71 Art. 3: the day of the event is not counted).
    pub date_only: bool,
    /// The calendar on which retention periods are counted.
    pub timezone: Tz,
    pub subject: Option<String>,
    /// The `{call_id}` capture, if the key has one.
    pub call_id: Option<String>,
    /// Sidecars that exist; deleted with the recording.
    pub sidecars: Vec<ObjectMeta>,
    /// Companion keys rendered from the captures; deleted with the recording if present.
    pub companions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSource {
    Key,
    Sidecar,
    LastModified,
}

impl DateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DateSource::Key => "key",
            DateSource::Sidecar => "sidecar",
            DateSource::LastModified => "last-modified",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Unclassified {
    pub key: String,
    pub object: Option<ObjectMeta>,
    pub rules: Vec<String>,
    pub reason: Reason,
    /// The sidecar and companion keys its rules name: kept with it.
    pub owns: Vec<String>,
    /// The data subject, where the key or a sidecar names one even though
    /// the recording could not be classified (an erasure lists it as kept).
    pub subject: Option<String>,
}

/// The plan code of a recording kept because the store failed to give its
/// sidecar: a failure of the run (exit 1), unlike a sidecar that is wrong.
pub const SIDECAR_READ_FAILED: &str = "sidecar-read-failed";

/// Why an object is kept without a retention decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    NoRule,
    NoPurpose,
    UndefinedPurpose(Vec<String>),
    UnreadableSidecar {
        key: String,
        detail: String,
    },
    /// The store failed to give the sidecar (not a problem of its content).
    SidecarReadFailed {
        key: String,
        detail: String,
    },
    UnreadableDate(String),
    /// The listing could not hand the entry over as an object.
    Unlisted {
        kind: crate::store::ProblemKind,
        detail: String,
    },
}

impl Reason {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoRule => "no-rule",
            Reason::NoPurpose => "no-purpose",
            Reason::UndefinedPurpose(_) => "undefined-purpose",
            Reason::UnreadableSidecar { .. } => "unreadable-sidecar",
            Reason::SidecarReadFailed { .. } => SIDECAR_READ_FAILED,
            Reason::UnreadableDate(_) => "unreadable-date",
            Reason::Unlisted { kind, .. } => kind.code(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Reason::NoRule => "matches no recording rule".into(),
            Reason::NoPurpose => {
                "no purpose: neither the key, the rule nor a sidecar names one".into()
            }
            Reason::UndefinedPurpose(p) => {
                format!("purpose {} is not defined by any policy", p.join(", "))
            }
            Reason::SidecarReadFailed { key, detail } => {
                format!("sidecar {key} could not be read (the next run tries again): {detail}")
            }
            Reason::UnreadableSidecar { key, detail } => {
                format!("sidecar {key} cannot be used: {detail}")
            }
            Reason::UnreadableDate(d) => format!("recording date cannot be read: {d}"),
            Reason::Unlisted { detail, .. } => detail.clone(),
        }
    }
}

/// The sidecar fields lethe reads; other fields are allowed and ignored,
/// unless their name is a near miss of one of these (see [`parse_sidecar`]).
#[derive(Debug, Default, Deserialize)]
pub struct Sidecar {
    #[serde(default)]
    pub purposes: Option<Vec<String>>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub recorded_at: Option<String>,
}

/// The fields of [`Sidecar`], each with the stem its near misses reduce to.
const SIDECAR_FIELDS: &[(&str, &[&str])] = &[
    ("purposes", &["purpose"]),
    ("subject", &["subject"]),
    ("recorded_at", &["recordedat", "recorded"]),
];

/// The subject a sidecar names, read leniently (any top-level string field
/// whose name folds to `subject`), so that a recording whose sidecar cannot
/// be used is still attributed to its subject when an erasure is reported.
fn subject_in(bytes: &[u8]) -> Option<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        // Not JSON at all (cut short, say): a `"subject": "..."` pair in the text still counts.
        static PAIR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r#"(?i)"subject(?:[_-]?id)?"\s*:\s*"((?:[^"\\]|\\.)*)""#)
                .expect("a valid regex")
        });
        let text = String::from_utf8_lossy(bytes);
        let raw = PAIR.captures(&text)?.get(1)?.as_str().to_string();
        return serde_json::from_str::<String>(&format!("\"{raw}\"")).ok();
    };
    value.as_object()?.iter().find_map(|(k, v)| {
        let folded: String = k
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        matches!(folded.as_str(), "subject" | "subjectid")
            .then(|| v.as_str().map(str::to_string))
            .flatten()
    })
}

/// The known field a name is a near miss of: it differs from it only by
/// case, whitespace, `-`/`_`, a trailing `s` or an `id` suffix. A typo must
/// not silently drop a purpose, a subject or a date.
fn near_miss(name: &str) -> Option<&'static str> {
    if SIDECAR_FIELDS.iter().any(|(field, _)| *field == name) {
        return None;
    }
    let folded: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    let mut stems = vec![folded.as_str()];
    for _ in 0..2 {
        let more: Vec<&str> = stems
            .iter()
            .flat_map(|s| [s.strip_suffix('s'), s.strip_suffix("id")])
            .flatten()
            .collect();
        stems.extend(more);
    }
    SIDECAR_FIELDS
        .iter()
        .find(|(_, known)| known.iter().any(|k| stems.contains(k)))
        .map(|(field, _)| *field)
}

/// Walks a JSON document and refuses a key that appears twice in one object,
/// at any depth: a JSON reader keeps only one of them, and which one is not
/// something to guess a retention on.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "field {key:?} appears twice"
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

/// Reads a sidecar's JSON; the error says what is wrong (the caller names the key).
/// A duplicate key anywhere, or a near miss of a field lethe reads, makes
/// the sidecar unreadable: the recording is kept and reported.
pub fn parse_sidecar(bytes: &[u8]) -> Result<Sidecar, String> {
    serde_json::from_slice::<NoDuplicateKeys>(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or("the sidecar must be a JSON object")?;
    for name in obj.keys() {
        if let Some(right) = near_miss(name) {
            return Err(format!(
                "field {name:?} is not understood; did you mean {right:?}?"
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("invalid field: {e}"))
}

/// Reads a date written in a sidecar: RFC 3339 with an offset, or a local
/// date or date-time on the policy's calendar. The flag says the text was a
/// bare date (day precision; its local midnight is returned).
pub fn parse_sidecar_date(text: &str, tz: Tz) -> Result<(DateTime<Utc>, bool), String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok((t.with_timezone(&Utc), false));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok((resolve_local(n, tz), false));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok((resolve_local(d.and_time(chrono::NaiveTime::MIN), tz), true));
    }
    Err(format!(
        "recorded_at {text:?} is not a date (use RFC 3339, e.g. 2025-05-31T14:03:00Z, or 2025-05-31)"
    ))
}

/// The end of the local day (the next local midnight on the calendar `tz`)
/// on which `at` falls. A period counted from a date without a time ends
/// there: the day of the event is not counted, so the period ends with the
/// last hour of its last day (Regulation 1182/71 Art. 3(1) and 3(2)(c)).
pub fn end_of_day(at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    match at.with_timezone(&tz).date_naive().succ_opt() {
        Some(next) => resolve_local(next.and_time(chrono::NaiveTime::MIN), tz),
        None => at,
    }
}

/// The last instant a date may stand for: the end of its day if it has no time.
fn latest_instant((at, date_only): (DateTime<Utc>, bool), tz: Tz) -> DateTime<Utc> {
    if date_only { end_of_day(at, tz) } else { at }
}

/// Of two dates of one recording, the one that may stand for the later instant.
fn later_date(
    current: Option<(DateTime<Utc>, bool)>,
    new: (DateTime<Utc>, bool),
    tz: Tz,
) -> (DateTime<Utc>, bool) {
    match current {
        Some(c) if latest_instant(c, tz) >= latest_instant(new, tz) => c,
        _ => new,
    }
}

/// Classifies one scanned entry.
pub fn classify(scanned: Scanned<'_>, policy: &Policy) -> Classified {
    match scanned {
        Scanned::Owned(meta) => Classified::Owned(meta),
        Scanned::Unmatched(meta) => Classified::Unclassified(Unclassified {
            key: meta.location.to_string(),
            object: Some(meta),
            rules: vec![],
            reason: Reason::NoRule,
            owns: vec![],
            subject: None,
        }),
        Scanned::Problem { name, reason, kind } => Classified::Unclassified(Unclassified {
            key: name,
            object: None,
            rules: vec![],
            reason: Reason::Unlisted {
                kind,
                detail: reason,
            },
            owns: vec![],
            subject: None,
        }),
        Scanned::Candidate(c) => classify_candidate(c, policy),
    }
}

/// Classifies a key that matched at least one rule: the key and its
/// sidecars are read for purposes, a subject and a date, and the recording
/// is kept unclassified at the first thing that cannot be established.
fn classify_candidate(c: Candidate<'_>, policy: &Policy) -> Classified {
    let key = c.object.location.to_string();
    let rules: Vec<String> = c.matches.iter().map(|m| m.rule.name.clone()).collect();
    // What the recording names, whether or not it can be classified: an
    // unclassified recording keeps its sidecars and companions too.
    let owns = owned_keys(&c, &key);
    let named_subject = named_subject(&c);
    let unclassified = |reason: Reason| {
        Classified::Unclassified(Unclassified {
            key: key.clone(),
            object: Some(c.object.clone()),
            rules: rules.clone(),
            reason,
            owns: owns.clone(),
            subject: named_subject.clone(),
        })
    };
    let timezone = c
        .matches
        .first()
        .map(|m| m.rule.timezone)
        .unwrap_or(Tz::UTC);
    let call_id = c
        .matches
        .iter()
        .find_map(|m| m.captures.get("call_id").cloned());
    let mut evidence = match Evidence::from_key(&c.matches, &key, timezone) {
        Ok(evidence) => evidence,
        Err(reason) => return unclassified(reason),
    };
    for s in c.sidecars {
        if let Err(reason) = evidence.read_sidecar(s, timezone) {
            return unclassified(reason);
        }
    }
    if let Err(reason) = evidence.check_purposes(policy) {
        return unclassified(reason);
    }
    let ((recorded_at, date_only), recorded_from) = match (evidence.key_date, evidence.sidecar_date)
    {
        (Some(d), _) => (d, DateSource::Key),
        (None, Some(d)) => (d, DateSource::Sidecar),
        (None, None) => ((c.object.last_modified, false), DateSource::LastModified),
    };
    Classified::Recording(Recording {
        object: c.object,
        rules,
        purposes: evidence.purposes.into_iter().collect(),
        recorded_at,
        recorded_from,
        date_only,
        timezone,
        subject: evidence.subject,
        call_id,
        sidecars: evidence.sidecars,
        companions: evidence.companions,
    })
}

/// The sidecar and companion keys a candidate's rules name, other than the
/// key itself; a companion template that needs an unreadable key date names nothing.
fn owned_keys(c: &Candidate<'_>, key: &str) -> Vec<String> {
    let mut owns: Vec<String> = c.sidecars.iter().map(|s| s.key.clone()).collect();
    for m in &c.matches {
        let recorded = match (m.rule.pattern.date_format(), m.captures.get("recorded")) {
            (Some(f), Some(raw)) => f.parse_value(raw).ok(),
            _ => None,
        };
        for template in &m.rule.companions {
            if let Some(k) = template.render(&m.captures, recorded)
                && k != key
                && !owns.contains(&k)
            {
                owns.push(k);
            }
        }
    }
    owns
}

/// The subject a candidate's key or any present sidecar names, even one the
/// sidecar parser would refuse, so that an erasure can list it as kept.
fn named_subject(c: &Candidate<'_>) -> Option<String> {
    c.matches
        .iter()
        .find_map(|m| m.captures.get("subject").cloned())
        .or_else(|| {
            c.sidecars.iter().find_map(|s| match &s.state {
                SidecarState::Present { bytes, .. } => subject_in(bytes),
                _ => None,
            })
        })
}

/// What a candidate's key and sidecars say about it, gathered before the
/// recording is judged.
struct Evidence {
    purposes: BTreeSet<String>,
    subject: Option<String>,
    key_date: Option<(DateTime<Utc>, bool)>,
    sidecar_date: Option<(DateTime<Utc>, bool)>,
    /// Companion keys rendered from the captures, less those that are sidecars.
    companions: Vec<String>,
    /// Sidecars that exist.
    sidecars: Vec<ObjectMeta>,
}

impl Evidence {
    /// Reads the purposes, subject, date and companions every matching rule
    /// finds in the key; `Err` if a rule's date capture is not a date.
    fn from_key(matches: &[RuleMatch<'_>], key: &str, timezone: Tz) -> Result<Self, Reason> {
        let mut evidence = Evidence {
            purposes: BTreeSet::new(),
            subject: None,
            key_date: None,
            sidecar_date: None,
            companions: Vec::new(),
            sidecars: Vec::new(),
        };
        for m in matches {
            if let Some(p) = m.captures.get("purpose") {
                evidence.purposes.insert(p.clone());
            }
            evidence.purposes.extend(m.rule.purposes.iter().cloned());
            if evidence.subject.is_none() {
                evidence.subject = m.captures.get("subject").cloned();
            }
            let mut recorded_local = None;
            if let (Some(format), Some(raw)) =
                (m.rule.pattern.date_format(), m.captures.get("recorded"))
            {
                match format.parse_value(raw) {
                    Ok(local) => {
                        recorded_local = Some(local);
                        let at = (resolve_local(local, m.rule.timezone), format.is_date_only());
                        // Several rules may date the key differently: the later date keeps longer.
                        evidence.key_date = Some(later_date(evidence.key_date, at, timezone));
                    }
                    Err(e) => return Err(Reason::UnreadableDate(e)),
                }
            }
            for template in &m.rule.companions {
                if let Some(k) = template.render(&m.captures, recorded_local)
                    && k != key
                    && !evidence.companions.contains(&k)
                {
                    evidence.companions.push(k);
                }
            }
        }
        Ok(evidence)
    }

    /// Adds what one sidecar says; `Err` if the store failed to give it or
    /// its content cannot be read, since a guess could delete too early.
    fn read_sidecar(&mut self, s: SidecarRead, timezone: Tz) -> Result<(), Reason> {
        match s.state {
            SidecarState::Absent => {}
            SidecarState::Failed(detail) => {
                return Err(Reason::SidecarReadFailed { key: s.key, detail });
            }
            SidecarState::Unreadable(detail) => {
                return Err(Reason::UnreadableSidecar { key: s.key, detail });
            }
            SidecarState::Present { meta, bytes } => {
                let parsed = match parse_sidecar(&bytes) {
                    Ok(p) => p,
                    Err(detail) => {
                        return Err(Reason::UnreadableSidecar { key: s.key, detail });
                    }
                };
                self.purposes.extend(
                    parsed
                        .purposes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| p.trim().to_string()),
                );
                if self.subject.is_none() {
                    self.subject = parsed.subject;
                }
                if let Some(text) = parsed.recorded_at {
                    match parse_sidecar_date(&text, timezone) {
                        Ok(at) => {
                            self.sidecar_date = Some(later_date(self.sidecar_date, at, timezone))
                        }
                        Err(detail) => {
                            return Err(Reason::UnreadableSidecar { key: s.key, detail });
                        }
                    }
                }
                self.companions.retain(|k| *k != s.key);
                self.sidecars.push(meta);
            }
        }
        Ok(())
    }

    /// Requires at least one purpose, and every purpose defined by the policy.
    fn check_purposes(&self, policy: &Policy) -> Result<(), Reason> {
        if self.purposes.is_empty() {
            return Err(Reason::NoPurpose);
        }
        let undefined: Vec<String> = self
            .purposes
            .iter()
            .filter(|p| policy.purpose(p).is_none())
            .cloned()
            .collect();
        if !undefined.is_empty() {
            return Err(Reason::UndefinedPurpose(undefined));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::scan::{Candidate, SidecarRead};
    use chrono::TimeZone;
    use object_store::path::Path as ObjectPath;
    use std::path::PathBuf;

    const POLICY: &str = r#"
timezone: Europe/Warsaw
purposes:
  quality:  { retain: 6 months,  basis: "q" }
  disputes: { retain: 24 months, basis: "d" }
  orders:   { retain: 5 years, minimum: 5 years, basis: "m" }
recordings:
  - name: cc
    store: s
    match: "calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.wav"
    sidecar: "calls/{purpose}/{recorded:%Y/%m/%d}/{call_id}.json"
    companions: ["transcripts/{call_id}.txt"]
  - name: orders
    store: s
    match: "orders/{subject}/{call_id}.wav"
    purposes: [orders]
    sidecar: "orders/{subject}/{call_id}.json"
"#;

    fn policy() -> Policy {
        Policy::from_sources(vec![(
            "p.yaml".into(),
            PathBuf::from("p.yaml"),
            POLICY.as_bytes().to_vec(),
        )])
        .unwrap()
    }

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta {
            location: ObjectPath::parse(key).unwrap(),
            last_modified: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            size: 10,
            e_tag: None,
            version: None,
        }
    }

    fn run(key: &str, sidecar: Option<&str>) -> Classified {
        let p = policy();
        let matches = p.matches("s", key);
        let sidecars = matches
            .iter()
            .filter_map(|m| m.rule.sidecar.as_ref().map(|t| (m, t)))
            .filter_map(|(m, t)| {
                let recorded = m.rule.pattern.date_format().and_then(|f| {
                    m.captures
                        .get("recorded")
                        .and_then(|r| f.parse_value(r).ok())
                });
                let k = t.render(&m.captures, recorded)?;
                let state = match sidecar {
                    Some(body) => SidecarState::Present {
                        meta: meta(&k),
                        bytes: bytes::Bytes::from(body.to_string()),
                    },
                    None => SidecarState::Absent,
                };
                Some(SidecarRead { key: k, state })
            })
            .collect();
        let scanned = if matches.is_empty() {
            Scanned::Unmatched(meta(key))
        } else {
            Scanned::Candidate(Candidate {
                object: meta(key),
                matches,
                sidecars,
            })
        };
        classify(scanned, &p)
    }

    fn recording(c: Classified) -> Recording {
        match c {
            Classified::Recording(r) => r,
            other => panic!("expected a recording, got {other:?}"),
        }
    }

    fn reason(c: Classified) -> Reason {
        match c {
            Classified::Unclassified(u) => u.reason,
            other => panic!("expected unclassified, got {other:?}"),
        }
    }

    #[test]
    fn purposes_union_and_date_from_key_in_policy_timezone() {
        let r = recording(run(
            "calls/quality/2025/05/31/C-1.wav",
            Some(r#"{"purposes":["disputes"],"subject":"CUST-1","agent":"x"}"#),
        ));
        assert_eq!(r.purposes, vec!["disputes", "quality"]);
        assert_eq!(
            r.recorded_at,
            Utc.with_ymd_and_hms(2025, 5, 30, 22, 0, 0).unwrap()
        );
        assert_eq!(r.recorded_from, DateSource::Key);
        assert_eq!(r.subject.as_deref(), Some("CUST-1"));
        assert_eq!(r.sidecars.len(), 1);
        assert_eq!(r.companions, vec!["transcripts/C-1.txt"]);
    }

    #[test]
    fn date_from_sidecar_then_last_modified() {
        let r = recording(run(
            "orders/CUST-9/O-1.wav",
            Some(r#"{"recorded_at":"2021-03-04T05:06:07Z"}"#),
        ));
        assert_eq!(
            (r.recorded_at, r.recorded_from),
            (
                Utc.with_ymd_and_hms(2021, 3, 4, 5, 6, 7).unwrap(),
                DateSource::Sidecar
            )
        );
        assert_eq!(r.subject.as_deref(), Some("CUST-9"));
        let r = recording(run("orders/CUST-9/O-1.wav", None));
        assert_eq!(
            (r.recorded_at, r.recorded_from),
            (
                Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
                DateSource::LastModified
            )
        );
        let r = recording(run(
            "orders/CUST-9/O-1.wav",
            Some(r#"{"recorded_at":"2021-03-04"}"#),
        ));
        assert_eq!(
            r.recorded_at,
            Utc.with_ymd_and_hms(2021, 3, 3, 23, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_sidecar_the_store_failed_to_give_is_a_failure_not_a_bad_sidecar() {
        let p = policy();
        let key = "calls/quality/2025/01/01/C.wav";
        let classified = |state: SidecarState| {
            let matches = p.matches("s", key);
            classify(
                Scanned::Candidate(Candidate {
                    object: meta(key),
                    matches,
                    sidecars: vec![SidecarRead {
                        key: "calls/quality/2025/01/01/C.json".into(),
                        state,
                    }],
                }),
                &p,
            )
        };
        assert_eq!(
            reason(classified(SidecarState::Failed("503 Slow Down".into()))).code(),
            SIDECAR_READ_FAILED
        );
        assert_eq!(
            reason(classified(SidecarState::Unreadable("too large".into()))).code(),
            "unreadable-sidecar"
        );
    }

    #[test]
    fn what_cannot_be_established_is_unclassified() {
        assert_eq!(reason(run("notes/readme.txt", None)), Reason::NoRule);
        assert_eq!(
            reason(run("calls/marketing/2025/01/01/C.wav", None)),
            Reason::UndefinedPurpose(vec!["marketing".into()])
        );
        assert_eq!(
            reason(run("calls/quality/2025/02/30/C.wav", None)).code(),
            "unreadable-date"
        );
        assert_eq!(
            reason(run("calls/quality/2025/01/01/C.wav", Some("{not json"))).code(),
            "unreadable-sidecar"
        );
        assert_eq!(
            reason(run(
                "calls/quality/2025/01/01/C.wav",
                Some(r#"{"purpose":"disputes"}"#)
            ))
            .code(),
            "unreadable-sidecar"
        );
        assert_eq!(
            reason(run(
                "calls/quality/2025/01/01/C.wav",
                Some(r#"{"purposes":"disputes"}"#)
            ))
            .code(),
            "unreadable-sidecar"
        );
        assert_eq!(
            reason(run(
                "calls/quality/2025/01/01/C.wav",
                Some(r#"{"recorded_at":"yesterday"}"#)
            ))
            .code(),
            "unreadable-sidecar"
        );
        assert_eq!(
            reason(run(
                "calls/quality/2025/01/01/C.wav",
                Some(r#"{"purposes":["quality","gossip"]}"#)
            )),
            Reason::UndefinedPurpose(vec!["gossip".into()])
        );
    }

    #[test]
    fn a_date_without_a_time_is_marked_as_such() {
        let r = recording(run("calls/quality/2025/05/31/C-1.wav", None));
        assert!(r.date_only);
        let r = recording(run(
            "orders/CUST-9/O-1.wav",
            Some(r#"{"recorded_at":"2021-03-04"}"#),
        ));
        assert!(r.date_only);
        for timed in [
            "2021-03-04T05:06:07Z",
            "2021-03-04T05:06",
            "2021-03-04 05:06:07",
        ] {
            let body = format!(r#"{{"recorded_at":"{timed}"}}"#);
            let r = recording(run("orders/CUST-9/O-1.wav", Some(&body)));
            assert!(!r.date_only, "{timed}");
        }
        let r = recording(run("orders/CUST-9/O-1.wav", None));
        assert!(!r.date_only, "last-modified has a time");
        let warsaw = Tz::Europe__Warsaw;
        for at in [
            (2021, 11, 30, 23, 0),
            (2021, 12, 1, 12, 0),
            (2021, 12, 1, 22, 59),
        ] {
            let at = Utc
                .with_ymd_and_hms(at.0, at.1, at.2, at.3, at.4, 0)
                .unwrap();
            assert_eq!(
                end_of_day(at, warsaw),
                Utc.with_ymd_and_hms(2021, 12, 1, 23, 0, 0).unwrap(),
                "{at}"
            );
        }
    }

    #[test]
    fn a_near_miss_or_a_duplicate_field_makes_the_sidecar_unreadable() {
        for body in [
            r#"{"purposes":["disputes"],"purposes":[]}"#,
            r#"{"purposes":["disputes"],"subject":"A","subject":"B"}"#,
            r#"{"purposes":["disputes"],"agent":{"id":1,"id":2}}"#,
            r#"{"purposes":["disputes"],"notes":[{"a":1},{"b":1,"b":2}]}"#,
            r#"{"purposes":["disputes"],"\u0073ubject":"A","subject":"B"}"#,
            r#"{"Purpose":["disputes"]}"#,
            r#"{"purpose":["disputes"]}"#,
            r#"{"Purposes":["disputes"]}"#,
            r#"{"PURPOSES":["disputes"]}"#,
            r#"{"purposes ":["disputes"]}"#,
            r#"{" purposes":["disputes"]}"#,
            r#"{"pur-poses":["disputes"]}"#,
            r#"{"purpose_id":"disputes"}"#,
            r#"{"recorded-at":"2021-01-01"}"#,
            r#"{"recordedAt":"2021-01-01"}"#,
            r#"{"RECORDED_AT":"2021-01-01"}"#,
            r#"{"recorded":"2021-01-01"}"#,
            r#"{"recorded_ats":"2021-01-01"}"#,
            r#"{"subject_id":"CUST-1"}"#,
            r#"{"subjectId":"CUST-1"}"#,
            r#"{"Subject":"CUST-1"}"#,
            r#"{"subjects":["CUST-1"]}"#,
            r#"{"subject-ids":["CUST-1"]}"#,
        ] {
            let got = run("calls/quality/2025/01/01/C.wav", Some(body));
            match got {
                Classified::Unclassified(u) => {
                    assert_eq!(u.reason.code(), "unreadable-sidecar", "{body}");
                    assert!(
                        u.reason.describe().contains("appears twice")
                            || u.reason.describe().contains("did you mean"),
                        "{body}: {}",
                        u.reason.describe()
                    );
                }
                other => panic!("{body} was accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn other_fields_of_a_sidecar_stay_accepted() {
        for body in [
            r#"{"purposes":["disputes"],"agent":"x","queue":"q","notes":"n"}"#,
            r#"{"purposes":["disputes"],"call_id":"C","id":7,"subject_name":"Ann"}"#,
            r#"{"purposes":["disputes"],"agent":{"id":1,"name":"x"},"tags":[{"a":1},{"a":2}]}"#,
            r#"{"purposes":["disputes"],"subject":"CUST-1","recorded_at":"2025-01-01T10:00:00Z"}"#,
        ] {
            let r = recording(run("calls/quality/2025/01/01/C.wav", Some(body)));
            assert_eq!(r.purposes, vec!["disputes", "quality"], "{body}");
        }
    }
}
