//! Decision properties (proptest) over random policies, recordings, holds
//! and clocks: `decide` never deletes a held, unexpired, future-dated or
//! unclassified recording; expiry is monotone in `retain`; the calendar
//! arithmetic agrees with a reference computation written independently here,
//! also for a date without a time (counted to the end of the last day).
//!
//! `PROPTEST_CASES` sets the cases per property (CI: 256; long mode: 20000).

use std::path::PathBuf;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use lethe::classify::{DateSource, Recording};
use lethe::decide::{Decision, Orders, decide};
use lethe::hold::{Hold, Selector};
use lethe::policy::Policy;
use object_store::ObjectMeta;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Unit {
    Days,
    Months,
    Years,
}

impl Unit {
    fn word(self) -> &'static str {
        match self {
            Unit::Days => "days",
            Unit::Months => "months",
            Unit::Years => "years",
        }
    }
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![Just(Unit::Days), Just(Unit::Months), Just(Unit::Years)]
}

/// A purpose: retain (n, unit) and an optional minimum.
#[derive(Debug, Clone)]
struct PurposeSpec {
    retain: (u32, Unit),
    minimum: Option<(u32, Unit)>,
}

fn period() -> impl Strategy<Value = (u32, Unit)> {
    (1u32..=60, unit())
}

/// A minimum, when there is one, is in the retain's unit and no longer
/// (the policy refuses a retain shorter than the law's minimum).
fn purpose_spec() -> impl Strategy<Value = PurposeSpec> {
    (period(), proptest::option::weighted(0.25, 1u32..=60)).prop_map(|(retain, minimum)| {
        PurposeSpec {
            retain,
            minimum: minimum.map(|n| (n.min(retain.0), retain.1)),
        }
    })
}

fn policy_text(purposes: &[PurposeSpec]) -> String {
    let mut s = String::from("purposes:\n");
    for (i, p) in purposes.iter().enumerate() {
        s.push_str(&format!(
            "  p{i}: {{ retain: {} {}, basis: \"basis {i}\"",
            p.retain.0,
            p.retain.1.word()
        ));
        if let Some((n, u)) = p.minimum {
            s.push_str(&format!(", minimum: {n} {}", u.word()));
        }
        s.push_str(" }\n");
    }
    s.push_str("recordings:\n  - { name: r, store: s, match: \"{purpose}/{call_id}\" }\n");
    s
}

fn policy(purposes: &[PurposeSpec]) -> Policy {
    Policy::from_sources(vec![(
        "p.yaml".into(),
        PathBuf::from("p.yaml"),
        policy_text(purposes).into_bytes(),
    )])
    .unwrap_or_else(|e| panic!("{e}\n{}", policy_text(purposes)))
}

const ZONES: &[Tz] = &[
    Tz::UTC,
    Tz::Europe__Warsaw,
    Tz::America__New_York,
    Tz::Australia__Lord_Howe,
    Tz::Pacific__Chatham,
];

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2000-01-01 .. 2040-01-01, to the second.
    (946_684_800i64..2_208_988_800).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

fn recording(
    purposes: Vec<String>,
    at: DateTime<Utc>,
    tz: Tz,
    subject: Option<String>,
) -> Recording {
    Recording {
        object: ObjectMeta {
            location: "p0/C-1".into(),
            last_modified: at,
            size: 1,
            e_tag: None,
            version: None,
        },
        rules: vec!["r".into()],
        purposes,
        recorded_at: at,
        recorded_from: DateSource::Key,
        date_only: false,
        timezone: tz,
        subject,
        call_id: Some("C-1".into()),
        sidecars: vec![],
        companions: vec![],
    }
}

/// Reference calendar arithmetic, written without chrono's month helpers:
/// add months by counting (year, month), clamp the day to the month's
/// length, then add days one by one; read the local wall time back as the
/// latest matching instant, or the first one after a gap.
fn reference_end(at: DateTime<Utc>, tz: Tz, (n, unit): (u32, Unit)) -> DateTime<Utc> {
    let local = at.with_timezone(&tz).naive_local();
    let (months, days) = match unit {
        Unit::Days => (0, n),
        Unit::Months => (n, 0),
        Unit::Years => (12 * n, 0),
    };
    let total = local.year() * 12 + (local.month() as i32 - 1) + months as i32;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    let last = (28..=31)
        .rev()
        .find(|d| NaiveDate::from_ymd_opt(y, m, *d).is_some())
        .unwrap();
    let mut date = NaiveDate::from_ymd_opt(y, m, local.day().min(last)).unwrap();
    for _ in 0..days {
        date = date.succ_opt().unwrap();
    }
    reference_instant(date.and_time(local.time()), tz)
}

/// A local wall time as an instant: the latest matching one, or the first
/// one after a gap.
fn reference_instant(mut wall: chrono::NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    loop {
        let candidates: Vec<DateTime<Utc>> = tz
            .from_local_datetime(&wall)
            .earliest()
            .into_iter()
            .chain(tz.from_local_datetime(&wall).latest())
            .map(|t| t.with_timezone(&Utc))
            .collect();
        if let Some(latest) = candidates.into_iter().max() {
            return latest;
        }
        wall += Duration::minutes(1);
    }
}

proptest! {
    #![proptest_config(crate::proptest_config())]

    /// Whatever the policy and the clock: a deletion happens only when every
    /// purpose of the recording has ended (its later of retain and minimum),
    /// no hold covers it, and it is not dated in the future.
    #[test]
    fn deletes_only_what_has_expired_everywhere_and_is_not_held(
        specs in prop::collection::vec(purpose_spec(), 1..5),
        chosen in prop::collection::btree_set(0usize..5, 0..4),
        undefined in any::<bool>(),
        at in instant(),
        now in instant(),
        tz in prop::sample::select(ZONES),
        held in any::<bool>(),
    ) {
        let p = policy(&specs);
        let mut purposes: Vec<String> = chosen.iter().filter(|i| **i < specs.len()).map(|i| format!("p{i}")).collect();
        if undefined {
            purposes.push("not-in-the-policy".into());
        }
        let r = recording(purposes.clone(), at, tz, Some("CUST-1".into()));
        let mut orders = Orders::default();
        if held {
            orders.holds.push(Hold {
                case: "CASE-1".into(),
                reason: "r".into(),
                placed_by: "j".into(),
                placed_at: now,
                selectors: vec![Selector::Subject { subject: "CUST-1".into() }],
                store: None,
                review: None,
            });
        }
        let d = decide(&r, "s", &p, &orders, now);
        if let Decision::Delete(e) = &d {
            prop_assert!(!held, "a held recording was deleted: {d:?}");
            prop_assert!(at <= now, "a future-dated recording was deleted");
            prop_assert!(!purposes.is_empty(), "an unclassified recording was deleted");
            prop_assert!(!undefined, "a recording with an undefined purpose was deleted");
            prop_assert!(e.at.is_some_and(|end| end <= now));
            for name in &purposes {
                let i: usize = name[1..].parse().unwrap();
                let s = &specs[i];
                let end = reference_end(at, tz, s.retain);
                prop_assert!(end <= now, "{name} ends {end}, after now {now}");
                if let Some(m) = s.minimum {
                    prop_assert!(reference_end(at, tz, m) <= now, "{name}'s minimum is in force");
                }
            }
        } else if !held && at <= now && !purposes.is_empty() && !undefined {
            // Conversely, a free, classified, past recording whose every
            // period has ended is deleted.
            let all_ended = purposes.iter().all(|name| {
                let s = &specs[name[1..].parse::<usize>().unwrap()];
                reference_end(at, tz, s.retain) <= now
                    && s.minimum.is_none_or(|m| reference_end(at, tz, m) <= now)
            });
            prop_assert!(!all_ended, "expired everywhere yet kept: {d:?}");
        }
        if at > now {
            prop_assert_eq!(d, Decision::FutureDated);
        }
    }

    /// A longer retain never ends earlier.
    #[test]
    fn expiry_is_monotone_in_retain(
        a in period(),
        b in period(),
        at in instant(),
        tz in prop::sample::select(ZONES),
    ) {
        let end = |period: (u32, Unit)| {
            let p = policy(&[PurposeSpec { retain: period, minimum: None }]);
            let r = recording(vec!["p0".into()], at, tz, None);
            match decide(&r, "s", &p, &Orders::default(), at) {
                Decision::Keep(e) | Decision::Delete(e) => e.at.unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let months = |(n, u): (u32, Unit)| match u {
            Unit::Days => None,
            Unit::Months => Some(n),
            Unit::Years => Some(12 * n),
        };
        let (ea, eb) = (end(a), end(b));
        // Comparable when both are in the same unit family.
        match (months(a), months(b)) {
            (Some(ma), Some(mb)) if ma <= mb => prop_assert!(ea <= eb, "{a:?} ends {ea}, {b:?} ends {eb}"),
            (None, None) if a.0 <= b.0 => prop_assert!(ea <= eb, "{a:?} ends {ea}, {b:?} ends {eb}"),
            _ => {}
        }
        prop_assert!(ea > at, "a positive period ends after it starts");
    }

    /// A recording dated by a day without a time (its local midnight): a
    /// period ends at the end of the day it falls on, the next local midnight.
    #[test]
    fn a_date_without_a_time_counts_to_the_end_of_the_last_day(
        period in period(),
        at in instant(),
        tz in prop::sample::select(ZONES),
    ) {
        let p = policy(&[PurposeSpec { retain: period, minimum: Some(period) }]);
        let day = at.with_timezone(&tz).date_naive();
        let midnight = reference_instant(day.and_time(chrono::NaiveTime::MIN), tz);
        let r = Recording { date_only: true, ..recording(vec!["p0".into()], midnight, tz, None) };
        let got = match decide(&r, "s", &p, &Orders::default(), midnight) {
            Decision::Keep(e) => e.at.unwrap(),
            other => panic!("{other:?}"),
        };
        let last_day = reference_end(midnight, tz, period).with_timezone(&tz).date_naive();
        let expected = reference_instant(last_day.succ_opt().unwrap().and_time(chrono::NaiveTime::MIN), tz);
        prop_assert_eq!(got, expected, "{:?} from {} in {}", period, day, tz);
    }

    /// lethe's calendar agrees with the reference computation.
    #[test]
    fn calendar_arithmetic_matches_the_reference(
        period in period(),
        at in instant(),
        tz in prop::sample::select(ZONES),
    ) {
        let p = policy(&[PurposeSpec { retain: period, minimum: None }]);
        let r = recording(vec!["p0".into()], at, tz, None);
        let got = match decide(&r, "s", &p, &Orders::default(), at) {
            Decision::Keep(e) => e.at.unwrap(),
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(got, reference_end(at, tz, period), "{:?} from {} in {}", period, at, tz);
    }
}
