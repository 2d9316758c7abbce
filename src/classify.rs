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

use crate::policy::Policy;
use crate::policy::duration::resolve_local;
use crate::scan::{Candidate, Scanned, SidecarState};

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
    pub recorded_at: DateTime<Utc>,
    pub recorded_from: DateSource,
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

/// Why an object is kept without a retention decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    NoRule,
    NoPurpose,
    UndefinedPurpose(Vec<String>),
    UnreadableSidecar { key: String, detail: String },
    UnreadableDate(String),
    Unlisted(String),
}

impl Reason {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoRule => "no-rule",
            Reason::NoPurpose => "no-purpose",
            Reason::UndefinedPurpose(_) => "undefined-purpose",
            Reason::UnreadableSidecar { .. } => "unreadable-sidecar",
            Reason::UnreadableDate(_) => "unreadable-date",
            Reason::Unlisted(_) => "unreadable-object",
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
            Reason::UnreadableSidecar { key, detail } => {
                format!("sidecar {key} cannot be used: {detail}")
            }
            Reason::UnreadableDate(d) => format!("recording date cannot be read: {d}"),
            Reason::Unlisted(d) => d.clone(),
        }
    }
}

/// The sidecar fields lethe reads; other fields are allowed and ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Sidecar {
    #[serde(default)]
    pub purposes: Option<Vec<String>>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub recorded_at: Option<String>,
}

/// Near misses of the fields above: a typo must not silently drop a purpose.
const SUSPICIOUS_FIELDS: &[(&str, &str)] = &[
    ("purpose", "purposes"),
    ("Purposes", "purposes"),
    ("recorded", "recorded_at"),
    ("recordedAt", "recorded_at"),
    ("Subject", "subject"),
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

/// Reads a sidecar's JSON; the error says what is wrong (the caller names the key).
pub fn parse_sidecar(bytes: &[u8]) -> Result<Sidecar, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or("the sidecar must be a JSON object")?;
    for (wrong, right) in SUSPICIOUS_FIELDS {
        if obj.contains_key(*wrong) {
            return Err(format!(
                "field {wrong:?} is not understood; did you mean {right:?}?"
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("invalid field: {e}"))
}

/// Reads a date written in a sidecar: RFC 3339 with an offset, or a local
/// date or date-time on the policy's calendar.
pub fn parse_sidecar_date(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(resolve_local(n, tz));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(resolve_local(d.and_time(chrono::NaiveTime::MIN), tz));
    }
    Err(format!(
        "recorded_at {text:?} is not a date (use RFC 3339, e.g. 2025-05-31T14:03:00Z, or 2025-05-31)"
    ))
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
        Scanned::Problem { name, reason } => Classified::Unclassified(Unclassified {
            key: name,
            object: None,
            rules: vec![],
            reason: Reason::Unlisted(reason),
            owns: vec![],
            subject: None,
        }),
        Scanned::Candidate(c) => classify_candidate(c, policy),
    }
}

fn classify_candidate(c: Candidate<'_>, policy: &Policy) -> Classified {
    let key = c.object.location.to_string();
    let rules: Vec<String> = c.matches.iter().map(|m| m.rule.name.clone()).collect();
    // What the recording names, whether or not it can be classified: an
    // unclassified recording keeps its sidecars and companions too.
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
    let named_subject = c
        .matches
        .iter()
        .find_map(|m| m.captures.get("subject").cloned())
        .or_else(|| {
            c.sidecars.iter().find_map(|s| match &s.state {
                SidecarState::Present { bytes, .. } => subject_in(bytes),
                _ => None,
            })
        });
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

    let mut purposes: BTreeSet<String> = BTreeSet::new();
    let mut subject: Option<String> = None;
    let call_id = c
        .matches
        .iter()
        .find_map(|m| m.captures.get("call_id").cloned());
    let mut key_date: Option<DateTime<Utc>> = None;
    let mut companions: Vec<String> = Vec::new();
    for m in &c.matches {
        if let Some(p) = m.captures.get("purpose") {
            purposes.insert(p.clone());
        }
        purposes.extend(m.rule.purposes.iter().cloned());
        if subject.is_none() {
            subject = m.captures.get("subject").cloned();
        }
        let mut recorded_local = None;
        if let (Some(format), Some(raw)) =
            (m.rule.pattern.date_format(), m.captures.get("recorded"))
        {
            match format.parse_value(raw) {
                Ok(local) => {
                    recorded_local = Some(local);
                    let at = resolve_local(local, m.rule.timezone);
                    // Several rules may date the key differently: the later date keeps longer.
                    key_date = Some(key_date.map_or(at, |d| d.max(at)));
                }
                Err(e) => return unclassified(Reason::UnreadableDate(e)),
            }
        }
        for template in &m.rule.companions {
            if let Some(k) = template.render(&m.captures, recorded_local)
                && k != key
                && !companions.contains(&k)
            {
                companions.push(k);
            }
        }
    }

    let mut sidecar_date: Option<DateTime<Utc>> = None;
    let mut sidecars = Vec::new();
    for s in c.sidecars {
        match s.state {
            SidecarState::Absent => {}
            SidecarState::Unreadable(detail) => {
                return unclassified(Reason::UnreadableSidecar { key: s.key, detail });
            }
            SidecarState::Present { meta, bytes } => {
                let parsed = match parse_sidecar(&bytes) {
                    Ok(p) => p,
                    Err(detail) => {
                        return unclassified(Reason::UnreadableSidecar { key: s.key, detail });
                    }
                };
                purposes.extend(
                    parsed
                        .purposes
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| p.trim().to_string()),
                );
                if subject.is_none() {
                    subject = parsed.subject;
                }
                if let Some(text) = parsed.recorded_at {
                    match parse_sidecar_date(&text, timezone) {
                        Ok(at) => sidecar_date = Some(sidecar_date.map_or(at, |d| d.max(at))),
                        Err(detail) => {
                            return unclassified(Reason::UnreadableSidecar { key: s.key, detail });
                        }
                    }
                }
                companions.retain(|k| *k != s.key);
                sidecars.push(meta);
            }
        }
    }

    if purposes.is_empty() {
        return unclassified(Reason::NoPurpose);
    }
    let undefined: Vec<String> = purposes
        .iter()
        .filter(|p| policy.purpose(p).is_none())
        .cloned()
        .collect();
    if !undefined.is_empty() {
        return unclassified(Reason::UndefinedPurpose(undefined));
    }
    let (recorded_at, recorded_from) = match (key_date, sidecar_date) {
        (Some(d), _) => (d, DateSource::Key),
        (None, Some(d)) => (d, DateSource::Sidecar),
        (None, None) => (c.object.last_modified, DateSource::LastModified),
    };
    Classified::Recording(Recording {
        object: c.object,
        rules,
        purposes: purposes.into_iter().collect(),
        recorded_at,
        recorded_from,
        timezone,
        subject,
        call_id,
        sidecars,
        companions,
    })
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
}
