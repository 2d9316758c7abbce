//! Legal holds: selectors that freeze recordings for a case, whatever their
//! retention says.
//!
//! A hold is placed and released through the ledger (so `ledger verify`
//! covers it) and never edited. This module owns the vocabulary and the
//! matching, both pure: which recordings a hold covers is a function of the
//! recording's store, key, subject, call id and recording date. Dates are
//! compared on both the UTC calendar and the policy's calendar, so that a
//! recording near midnight is held if either calendar puts it in the range:
//! when in doubt, keep.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// One way of naming recordings; a hold covers a recording matched by any of its selectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Selector {
    Subject { subject: String },
    CallId { call_id: String },
    Key { key: String },
    Prefix { prefix: String },
    RecordedBetween { from: NaiveDate, to: NaiveDate },
}

impl Selector {
    /// Parses `FROM..TO` (inclusive dates, `YYYY-MM-DD..YYYY-MM-DD`).
    pub fn recorded_between(text: &str) -> Result<Self, String> {
        let (from, to) = text.split_once("..").ok_or_else(|| {
            format!("expected FROM..TO (e.g. 2025-01-01..2025-03-31), got {text:?}")
        })?;
        let date = |d: &str| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| format!("{d:?} is not a date (YYYY-MM-DD)"))
        };
        let (from, to) = (date(from)?, date(to)?);
        if from > to {
            return Err(format!("the range {text:?} ends before it starts"));
        }
        Ok(Selector::RecordedBetween { from, to })
    }

    /// `--key KEY`: refused if no listed key can ever be written that way.
    pub fn key(text: &str) -> Result<Self, String> {
        check_path("key", text)?;
        Ok(Selector::Key {
            key: text.to_string(),
        })
    }

    /// `--prefix PREFIX`: refused if no listed key can ever start that way.
    pub fn prefix(text: &str) -> Result<Self, String> {
        check_path("prefix", text)?;
        Ok(Selector::Prefix {
            prefix: text.to_string(),
        })
    }

    fn matches(&self, target: &HoldTarget) -> bool {
        match self {
            Selector::Subject { subject } => target.subject.as_deref() == Some(subject.as_str()),
            Selector::CallId { call_id } => target.call_id.as_deref() == Some(call_id.as_str()),
            // A hold on a sidecar or companion keeps it, and so its recording.
            Selector::Key { key } => target.keys().any(|k| k == key),
            Selector::Prefix { prefix } => target.keys().any(|k| k.starts_with(prefix.as_str())),
            Selector::RecordedBetween { from, to } => {
                let utc = target.recorded_at.date_naive();
                let local = target
                    .recorded_at
                    .with_timezone(&target.timezone)
                    .date_naive();
                [utc, local].iter().any(|d| from <= d && d <= to)
            }
        }
    }

    /// How the selector reads in a listing.
    pub fn describe(&self) -> String {
        match self {
            Selector::Subject { subject } => format!("subject {subject}"),
            Selector::CallId { call_id } => format!("call id {call_id}"),
            Selector::Key { key } => format!("key {key}"),
            Selector::Prefix { prefix } => format!("prefix {prefix}"),
            Selector::RecordedBetween { from, to } => format!("recorded {from}..{to}"),
        }
    }
}

/// Refuses a key or prefix that cannot name a key as stores list them:
/// keys are relative to the store, made of non-empty segments other than
/// `.` and `..`, and `--key`/`--prefix` compare them literally (no globs).
/// A hold that can never match would be placed, then hold nothing.
fn check_path(flag: &str, text: &str) -> Result<(), String> {
    let segments: Vec<&str> = text.split('/').collect();
    // A prefix may end with `/` (all keys in that folder); a key may not.
    let inner = match flag {
        "prefix" => &segments[..segments.len() - 1],
        _ => &segments[..],
    };
    let why = if text.starts_with('/') {
        "keys are relative to the store and never start with \"/\""
    } else if segments.iter().any(|s| *s == "." || *s == "..") {
        "keys have no \".\" or \"..\" segments"
    } else if inner.iter().any(|s| s.is_empty()) {
        "keys have no empty segments (\"//\", or a trailing \"/\" on a key)"
    } else if text.contains(['*', '?', '[', ']']) {
        if flag == "key" {
            "--key is compared exactly, not as a pattern (* ? [ ] are not wildcards)"
        } else {
            "--prefix is compared literally, not as a pattern (* ? [ ] are not wildcards)"
        }
    } else {
        return Ok(());
    };
    let mut suggestion: String = text
        .split(['*', '?', '['])
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/");
    if flag == "prefix" && (text.ends_with('/') || text.contains(['*', '?', '['])) {
        let cut = text.split(['*', '?', '[']).next().unwrap_or_default();
        if cut.ends_with('/') && !suggestion.is_empty() {
            suggestion.push('/');
        }
    }
    let instead = if segments.contains(&"..") || suggestion.is_empty() {
        "write the key as `lethe plan` lists it, relative to the store".to_string()
    } else if flag == "key" && text.contains(['*', '?', '[', ']']) {
        format!("use --prefix {suggestion} for every key that starts with it")
    } else {
        format!("write --{flag} {suggestion}")
    };
    Err(format!(
        "--{flag} {text:?} can never match: {why}; {instead}"
    ))
}

/// A legal hold as placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub case: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: DateTime<Utc>,
    pub selectors: Vec<Selector>,
    /// Limits the hold to one store; `None`: every store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// A date by which someone should review the hold; it is never released by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<NaiveDate>,
}

/// What a hold is matched against: the facts of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldTarget {
    pub store: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub timezone: Tz,
    /// The recording's sidecars and companions: a key or prefix selector
    /// that covers one of them covers the recording.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

impl HoldTarget {
    /// The recording's key, then its sidecars' and companions'.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.key.as_str()).chain(self.objects.iter().map(String::as_str))
    }
}

impl Hold {
    pub fn covers(&self, target: &HoldTarget) -> bool {
        self.store.as_ref().is_none_or(|s| *s == target.store)
            && self.selectors.iter().any(|s| s.matches(target))
    }
}

/// How an erased subject is remembered: the SHA-256 of its id, so that a
/// later run recognises its recordings without the ledger keeping the id.
pub fn subject_digest(subject: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(subject.as_bytes()))
}

/// Whether two names given as `--by` are the same person: compared trimmed
/// and case-folded, so that `alice`, `ALICE` and `"alice "` cannot make up
/// the two people a release may require.
pub fn same_person(a: &str, b: &str) -> bool {
    let fold = |s: &str| s.trim().to_lowercase();
    fold(a) == fold(b)
}

/// The first active hold that covers `target`.
pub fn covering<'h>(holds: &'h [Hold], target: &HoldTarget) -> Option<&'h Hold> {
    holds.iter().find(|h| h.covers(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn target(key: &str, subject: Option<&str>, at: DateTime<Utc>) -> HoldTarget {
        HoldTarget {
            store: "recordings".into(),
            key: key.into(),
            subject: subject.map(str::to_string),
            call_id: Some("C-42".into()),
            recorded_at: at,
            timezone: "Europe/Warsaw".parse().unwrap(),
            objects: vec![],
        }
    }

    fn hold(selectors: Vec<Selector>, store: Option<&str>) -> Hold {
        Hold {
            case: "CASE-1".into(),
            reason: "r".into(),
            placed_by: "j".into(),
            placed_at: crate::clock::SystemClock::read(),
            selectors,
            store: store.map(str::to_string),
            review: None,
        }
    }

    #[test]
    fn a_key_or_prefix_that_can_never_match_is_refused_with_what_to_write() {
        let check = |flag: &str, text: &str, expected: Option<&str>| {
            let got = match flag {
                "key" => Selector::key(text),
                _ => Selector::prefix(text),
            };
            match (got, expected) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => assert!(e.contains(want), "--{flag} {text}: {e}"),
                (got, want) => panic!("--{flag} {text}: {got:?}, expected {want:?}"),
            }
        };
        check(
            "prefix",
            "/calls/quality/",
            Some("write --prefix calls/quality/"),
        );
        check(
            "key",
            "./calls/quality/C-2.wav",
            Some("write --key calls/quality/C-2.wav"),
        );
        check("key", "calls/../C-2.wav", Some("as `lethe plan` lists it"));
        check(
            "prefix",
            "calls//quality/",
            Some("write --prefix calls/quality/"),
        );
        check("key", "calls/quality/", Some("no empty segments"));
        check(
            "prefix",
            "calls/quality/2020/01/0*",
            Some("write --prefix calls/quality/2020/01/0"),
        );
        check("prefix", "calls/*/2020/", Some("write --prefix calls/"));
        check("prefix", "calls/[ab]", Some("not as a pattern"));
        check("key", "calls/C-?.wav", Some("use --prefix calls/C-"));
        for ok in [
            "calls/quality/",
            "calls/quality/2020/01/0",
            "calls",
            "c.d/e..f/",
        ] {
            check("prefix", ok, None);
        }
        check("key", "calls/quality/2020/01/01/C-2.wav", None);
    }

    #[test]
    fn one_person_under_several_spellings_is_one_person() {
        for (a, b) in [
            ("alice", "ALICE"),
            ("alice", "alice "),
            (" Alice", "aLiCe"),
            ("Łukasz", "ŁUKASZ"),
        ] {
            assert!(same_person(a, b), "{a:?} {b:?}");
        }
        assert!(!same_person("alice", "bob"));
        assert!(!same_person("j.kowalska", "j.kowalski"));
    }

    #[test]
    fn selectors() {
        let t = target(
            "calls/disputes/2025/x.wav",
            Some("CUST-1"),
            Utc.with_ymd_and_hms(2025, 2, 1, 12, 0, 0).unwrap(),
        );
        assert!(
            hold(
                vec![Selector::Subject {
                    subject: "CUST-1".into()
                }],
                None
            )
            .covers(&t)
        );
        assert!(
            !hold(
                vec![Selector::Subject {
                    subject: "CUST-2".into()
                }],
                None
            )
            .covers(&t)
        );
        assert!(
            hold(
                vec![Selector::CallId {
                    call_id: "C-42".into()
                }],
                None
            )
            .covers(&t)
        );
        assert!(
            hold(
                vec![Selector::Key {
                    key: "calls/disputes/2025/x.wav".into()
                }],
                None
            )
            .covers(&t)
        );
        assert!(
            !hold(
                vec![Selector::Key {
                    key: "calls/disputes/2025/x".into()
                }],
                None
            )
            .covers(&t)
        );
        assert!(
            hold(
                vec![Selector::Prefix {
                    prefix: "calls/disputes/".into()
                }],
                None
            )
            .covers(&t)
        );
        assert!(
            !hold(
                vec![Selector::Prefix {
                    prefix: "calls/quality/".into()
                }],
                Some("recordings")
            )
            .covers(&t)
        );
        assert!(
            !hold(
                vec![Selector::Subject {
                    subject: "CUST-1".into()
                }],
                Some("archive")
            )
            .covers(&t)
        );
        assert!(
            hold(
                vec![
                    Selector::Prefix { prefix: "x".into() },
                    Selector::Subject {
                        subject: "CUST-1".into()
                    }
                ],
                None
            )
            .covers(&t)
        );
    }

    #[test]
    fn a_key_or_prefix_on_a_sidecar_or_companion_covers_its_recording() {
        let mut t = target("calls/q/x.wav", None, crate::clock::SystemClock::read());
        t.objects = vec!["transcripts/x.txt".into(), "calls/q/x.json".into()];
        for (selector, covered) in [
            (
                Selector::Key {
                    key: "transcripts/x.txt".into(),
                },
                true,
            ),
            (
                Selector::Key {
                    key: "calls/q/x.json".into(),
                },
                true,
            ),
            (
                Selector::Prefix {
                    prefix: "transcripts/".into(),
                },
                true,
            ),
            (
                Selector::Key {
                    key: "transcripts/y.txt".into(),
                },
                false,
            ),
            (
                Selector::Prefix {
                    prefix: "orders/".into(),
                },
                false,
            ),
        ] {
            assert_eq!(
                hold(vec![selector.clone()], None).covers(&t),
                covered,
                "{selector:?}"
            );
        }
    }

    #[test]
    fn date_ranges_hold_on_either_calendar() {
        let range = Selector::recorded_between("2025-01-01..2025-03-31").unwrap();
        // 2024-12-31 23:30 UTC is already 1 January in Warsaw: held.
        let edge = target(
            "k",
            None,
            Utc.with_ymd_and_hms(2024, 12, 31, 23, 30, 0).unwrap(),
        );
        assert!(hold(vec![range.clone()], None).covers(&edge));
        let before = target(
            "k",
            None,
            Utc.with_ymd_and_hms(2024, 12, 31, 12, 0, 0).unwrap(),
        );
        assert!(!hold(vec![range.clone()], None).covers(&before));
        let last_day = target(
            "k",
            None,
            Utc.with_ymd_and_hms(2025, 3, 31, 23, 59, 0).unwrap(),
        );
        assert!(hold(vec![range], None).covers(&last_day));
        assert!(
            Selector::recorded_between("2025-03-31..2025-01-01")
                .unwrap_err()
                .contains("ends before")
        );
        assert!(
            Selector::recorded_between("2025-01-01")
                .unwrap_err()
                .contains("FROM..TO")
        );
    }

    #[test]
    fn holds_serialize_as_tagged_selectors() {
        let h = hold(
            vec![
                Selector::recorded_between("2025-01-01..2025-03-31").unwrap(),
                Selector::Subject {
                    subject: "S".into(),
                },
            ],
            None,
        );
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json["selectors"][0],
            serde_json::json!({"by": "recorded-between", "from": "2025-01-01", "to": "2025-03-31"})
        );
        assert_eq!(
            json["selectors"][1],
            serde_json::json!({"by": "subject", "subject": "S"})
        );
        assert_eq!(serde_json::from_value::<Hold>(json).unwrap(), h);
    }
}
