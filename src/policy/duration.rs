//! Calendar durations: "6 months", "5 years", "90 days", "1 year 6 months".
//!
//! Retention law speaks in calendar months and years, not in multiples of
//! days: a recording made on 31 May and kept for 6 months may go on 30 November
//! (the last day of the month, as chrono's month arithmetic clamps), and one
//! made on 29 February and kept a year on 28 February. Arithmetic happens on
//! the local calendar of the policy's time zone, then returns to an instant.

use std::fmt;

use chrono::{DateTime, Days, LocalResult, Months, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Years and months are kept as months, weeks as days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CalendarDuration {
    pub months: u32,
    pub days: u32,
}

/// Longest accepted retention: a thousand years is a typo, not a policy.
const MAX_MONTHS: u32 = 12 * 200;
const MAX_DAYS: u32 = 366 * 200;

impl CalendarDuration {
    /// Parses "6 months", "1 year", "2 weeks", "1 year 6 months"; units may be
    /// singular or plural, any case.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = "expected a duration like \"6 months\", \"5 years\", \"90 days\" or \"1 year 6 months\"";
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() || !words.len().is_multiple_of(2) {
            return Err(format!("{expected}, got {text:?}"));
        }
        let mut d = CalendarDuration { months: 0, days: 0 };
        let mut seen = Vec::new();
        for pair in words.chunks(2) {
            let n: u32 = pair[0].parse().map_err(|_| {
                format!(
                    "{expected}, got {text:?} ({:?} is not a whole number)",
                    pair[0]
                )
            })?;
            let unit = pair[1].to_ascii_lowercase();
            let unit = unit.trim_end_matches(',');
            let (canonical, months, days) = match unit {
                "year" | "years" => ("years", n.checked_mul(12), Some(0)),
                "month" | "months" => ("months", Some(n), Some(0)),
                "week" | "weeks" => ("weeks", Some(0), n.checked_mul(7)),
                "day" | "days" => ("days", Some(0), Some(n)),
                other => {
                    return Err(format!(
                        "{expected}, got {text:?} (unknown unit {other:?}; use days, weeks, months or years)"
                    ));
                }
            };
            if seen.contains(&canonical) {
                return Err(format!(
                    "{expected}, got {text:?} ({canonical} given twice)"
                ));
            }
            seen.push(canonical);
            let (Some(m), Some(dd)) = (months, days) else {
                return Err(format!("duration {text:?} is too long"));
            };
            d.months = d.months.saturating_add(m);
            d.days = d.days.saturating_add(dd);
        }
        if d.months > MAX_MONTHS || d.days > MAX_DAYS {
            return Err(format!(
                "duration {text:?} is longer than 200 years; is it a typo?"
            ));
        }
        Ok(d)
    }

    /// `start + self`, computed on the calendar of `tz`. `None` when the result
    /// is beyond the dates chrono can represent (treated as "never").
    pub fn add_to(&self, start: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = start.with_timezone(&tz).naive_local();
        let shifted = local
            .checked_add_months(Months::new(self.months))?
            .checked_add_days(Days::new(u64::from(self.days)))?;
        Some(resolve_local(shifted, tz))
    }
}

/// A local time back to an instant. In an ambiguous hour (clocks going back)
/// the later instant is taken, and in a skipped hour (clocks going forward)
/// the first instant after the gap: both keep a recording longer, never shorter.
pub fn resolve_local(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(_, later) => later.with_timezone(&Utc),
        LocalResult::None => {
            // Walk forward in minutes until the local time exists again (a
            // DST gap is at most a couple of hours).
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).latest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let (years, months) = (self.months / 12, self.months % 12);
        let plural = |n: u32, unit: &str| {
            if n == 1 {
                format!("1 {unit}")
            } else {
                format!("{n} {unit}s")
            }
        };
        if years > 0 && months == 0 {
            parts.push(plural(years, "year"));
        } else if self.months > 0 {
            parts.push(plural(self.months, "month"));
        }
        if self.days > 0 || parts.is_empty() {
            parts.push(plural(self.days, "day"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        )
    }

    fn check(start: (i32, u32, u32), duration: &str, expected: (i32, u32, u32)) {
        let d = CalendarDuration::parse(duration).unwrap();
        let got = d.add_to(utc(start.0, start.1, start.2), Tz::UTC).unwrap();
        assert_eq!(
            got,
            utc(expected.0, expected.1, expected.2),
            "{start:?} + {duration}"
        );
    }

    #[test]
    fn calendar_months_clamp_to_month_end() {
        check((2025, 5, 31), "6 months", (2025, 11, 30));
        check((2025, 8, 31), "6 months", (2026, 2, 28));
        check((2023, 8, 31), "6 months", (2024, 2, 29));
        check((2024, 2, 29), "1 year", (2025, 2, 28));
        check((2024, 2, 29), "4 years", (2028, 2, 29));
        check((2025, 1, 15), "3 months", (2025, 4, 15));
        check((2025, 12, 31), "1 month", (2026, 1, 31));
    }

    #[test]
    fn days_weeks_and_combinations() {
        check((2025, 2, 27), "2 days", (2025, 3, 1));
        check((2024, 2, 27), "2 days", (2024, 2, 29));
        check((2025, 1, 1), "2 weeks", (2025, 1, 15));
        check((2025, 1, 31), "1 year 1 month", (2026, 2, 28));
        check((2025, 1, 31), "1 month 1 day", (2025, 3, 1));
    }

    #[test]
    fn local_calendar_of_the_policy_timezone() {
        // 31 May 23:30 UTC is already 1 June in Warsaw: six months later is 1 December there.
        let start = Utc.with_ymd_and_hms(2025, 5, 31, 23, 30, 0).unwrap();
        let d = CalendarDuration::parse("6 months").unwrap();
        let warsaw: Tz = "Europe/Warsaw".parse().unwrap();
        assert_eq!(
            d.add_to(start, warsaw).unwrap(),
            Utc.with_ymd_and_hms(2025, 12, 1, 0, 30, 0).unwrap()
        );
        assert_eq!(
            d.add_to(start, Tz::UTC).unwrap(),
            Utc.with_ymd_and_hms(2025, 11, 30, 23, 30, 0).unwrap()
        );
    }

    #[test]
    fn skipped_and_repeated_local_hours_keep_longer() {
        let warsaw: Tz = "Europe/Warsaw".parse().unwrap();
        // 2026-03-29 02:30 does not exist in Warsaw (clocks jump 02:00 -> 03:00).
        let gap = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_local(gap, warsaw),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()
        );
        // 2026-10-25 02:30 happens twice; the later one is 01:30 UTC.
        let twice = NaiveDate::from_ymd_opt(2026, 10, 25)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            resolve_local(twice, warsaw),
            Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap()
        );
    }

    #[test]
    fn parse_errors_say_what_was_expected() {
        for bad in [
            "",
            "6",
            "six months",
            "6 fortnights",
            "6 months 2 months",
            "-1 days",
            "1000 years",
            "6 months 3",
        ] {
            let err = CalendarDuration::parse(bad).unwrap_err();
            assert!(
                err.contains("duration") || err.contains("expected"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            CalendarDuration::parse("5 Years").unwrap(),
            CalendarDuration {
                months: 60,
                days: 0
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "6 months",
            "5 years",
            "1 day",
            "2 months 3 days",
            "0 days",
            "18 months",
        ] {
            let d = CalendarDuration::parse(text).unwrap();
            assert_eq!(d.to_string(), text);
            assert_eq!(CalendarDuration::parse(&d.to_string()).unwrap(), d);
        }
    }
}
