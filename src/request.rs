//! Data subjects' requests (GDPR Art. 15 access, Art. 17 erasure, Arts. 7(3)
//! and 21 withdrawal and objection) and the deadline Art. 12(3) sets for
//! answering each: one month from receipt, extendable once by up to two
//! further months.
//!
//! A month is a calendar month: the same date in the next month, or that
//! month's last day when the date does not exist there (31 January -> 28 or
//! 29 February), as the EU's rules on periods (Regulation 1182/71 Art. 3(2)(c))
//! count it; a deadline that falls on a Saturday or Sunday moves to the next
//! Monday (Art. 3(4)). Dates are counted in UTC. Public holidays are not
//! known to lethe and are not counted.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Months Art. 12(3) gives to answer a request.
pub const ANSWER_MONTHS: u32 = 1;
/// The most an extension may add.
pub const MAX_EXTENSION_MONTHS: u32 = 2;

/// What the subject asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RequestKind {
    // (Plain comments: clap would list doc comments as per-value help.)
    // Which recordings are held, why, until when, and a copy (Art. 15).
    Access,
    // Erasure (Art. 17).
    Erasure,
    // Consent withdrawn (Art. 7(3)) or an objection (Art. 21).
    Withdrawal,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Erasure => "erasure",
            RequestKind::Withdrawal => "withdrawal",
        }
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `months` calendar months after `date`: the same day of the month, or the
/// month's last day when it has no such day.
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    // chrono clamps to the last day of the month, which is the rule.
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// The date itself on a weekday; the next Monday on a weekend.
pub fn next_working_day(date: NaiveDate) -> NaiveDate {
    let skip = match date.weekday() {
        Weekday::Sat => 2,
        Weekday::Sun => 1,
        _ => 0,
    };
    date + chrono::Days::new(skip)
}

/// The last day to answer a request received at `received`, given `months`
/// in all (1, or 1 plus an extension).
pub fn deadline(received: DateTime<Utc>, months: u32) -> NaiveDate {
    next_working_day(add_months(received.date_naive(), months))
}

/// Where a request stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// Not answered, the deadline not yet passed.
    Open,
    /// Not answered, the deadline passed.
    Late,
    /// Answered on or before the deadline.
    OnTime,
    /// Answered after the deadline.
    AnsweredLate,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Open => "open",
            Standing::Late => "LATE",
            Standing::OnTime => "answered on time",
            Standing::AnsweredLate => "answered late",
        }
    }
}

/// A request as the register knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    pub request: String,
    pub kind: RequestKind,
    /// SHA-256 of the subject's id: the register names no subject.
    pub subject_sha256: String,
    pub received: DateTime<Utc>,
    /// Months to answer in all: 1, plus the extension if one was recorded.
    pub months: u32,
    /// The extension, if one was recorded: who, why.
    pub extension: Option<Extension>,
    /// When it was answered, and by what (a receipt's or report's number).
    pub answered: Option<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extension {
    pub months: u32,
    pub by: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub at: DateTime<Utc>,
    /// What answered it, e.g. "erasure receipt #12".
    pub by: String,
}

impl Request {
    pub fn deadline(&self) -> NaiveDate {
        deadline(self.received, self.months)
    }

    /// The deadline before any extension: an extension is allowed only
    /// until it has passed.
    pub fn first_deadline(&self) -> NaiveDate {
        deadline(self.received, ANSWER_MONTHS)
    }

    pub fn standing(&self, now: DateTime<Utc>) -> Standing {
        let deadline = self.deadline();
        match &self.answered {
            Some(a) if a.at.date_naive() <= deadline => Standing::OnTime,
            Some(_) => Standing::AnsweredLate,
            None if now.date_naive() <= deadline => Standing::Open,
            None => Standing::Late,
        }
    }

    /// Why this request cannot be extended by `months` on `now`, if it
    /// cannot.
    pub fn refuses_extension(&self, months: u32, now: DateTime<Utc>) -> Option<String> {
        if !(1..=MAX_EXTENSION_MONTHS).contains(&months) {
            return Some(format!(
                "an extension is 1 to {MAX_EXTENSION_MONTHS} months (Art. 12(3)), not {months}"
            ));
        }
        if let Some(e) = &self.extension {
            return Some(format!(
                "request {} was already extended on {} by {}: Art. 12(3) allows one extension",
                self.request,
                e.at.date_naive(),
                e.by
            ));
        }
        if self.answered.is_some() {
            return Some(format!("request {} is already answered", self.request));
        }
        if now.date_naive() > self.first_deadline() {
            return Some(format!(
                "request {}'s deadline {} has passed: an extension must be made within the first month",
                self.request,
                self.first_deadline()
            ));
        }
        None
    }
}

/// A notice for each request past its deadline and not answered, as plans
/// and runs report them. Names no subject.
pub fn late_notices(requests: &[Request], now: DateTime<Utc>) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.standing(now) == Standing::Late)
        .map(|r| {
            format!(
                "{} request {} received {} is LATE: its deadline was {} (GDPR Art. 12(3)); answer it, see `lethe requests list`",
                r.kind,
                crate::report::printable(&r.request),
                r.received.date_naive(),
                r.deadline()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str) -> DateTime<Utc> {
        format!("{date}T10:00:00Z").parse().unwrap()
    }

    fn day(date: &str) -> NaiveDate {
        date.parse().unwrap()
    }

    #[test]
    fn a_month_is_the_same_date_next_month_or_that_month_s_last_day() {
        assert_eq!(add_months(day("2026-03-15"), 1), day("2026-04-15"));
        assert_eq!(add_months(day("2027-01-31"), 1), day("2027-02-28"));
        assert_eq!(add_months(day("2028-01-31"), 1), day("2028-02-29"));
        assert_eq!(add_months(day("2026-03-31"), 1), day("2026-04-30"));
        assert_eq!(add_months(day("2026-12-31"), 1), day("2027-01-31"));
        assert_eq!(add_months(day("2026-11-30"), 3), day("2027-02-28"));
    }

    #[test]
    fn a_deadline_on_a_weekend_moves_to_monday() {
        // 2027-02-28 is a Sunday.
        assert_eq!(deadline(at("2027-01-31"), 1), day("2027-03-01"));
        // 2026-08-15 is a Saturday.
        assert_eq!(deadline(at("2026-07-15"), 1), day("2026-08-17"));
        // A Friday stays.
        assert_eq!(deadline(at("2026-09-18"), 1), day("2026-10-19"));
        assert_eq!(deadline(at("2026-10-16"), 1), day("2026-11-16"));
        // Not a fixed number of days: 28, 30 and 31 days on.
        assert_eq!(deadline(at("2026-02-10"), 1), day("2026-03-10"));
        assert_eq!(deadline(at("2026-04-10"), 1), day("2026-05-11")); // 10 May is a Sunday
        assert_eq!(deadline(at("2026-01-12"), 3), day("2026-04-13")); // extended: 12 April is a Sunday
    }

    fn request(received: &str) -> Request {
        Request {
            request: "DSR-1".into(),
            kind: RequestKind::Access,
            subject_sha256: "aa".into(),
            received: at(received),
            months: 1,
            extension: None,
            answered: None,
        }
    }

    #[test]
    fn a_request_is_open_then_late_and_answered_on_time_or_late() {
        let mut r = request("2026-03-02");
        assert_eq!(r.deadline(), day("2026-04-02"));
        assert_eq!(r.standing(at("2026-04-02")), Standing::Open);
        assert_eq!(r.standing(at("2026-04-03")), Standing::Late);
        r.answered = Some(Answer {
            at: "2026-04-02T23:59:00Z".parse().unwrap(),
            by: "erasure receipt #1".into(),
        });
        assert_eq!(r.standing(at("2026-05-01")), Standing::OnTime);
        r.answered.as_mut().unwrap().at = at("2026-04-03");
        assert_eq!(r.standing(at("2026-05-01")), Standing::AnsweredLate);
    }

    #[test]
    fn one_extension_of_up_to_two_months_before_the_first_deadline() {
        let mut r = request("2026-03-02");
        assert!(r.refuses_extension(3, at("2026-03-10")).is_some());
        assert!(r.refuses_extension(0, at("2026-03-10")).is_some());
        assert!(
            r.refuses_extension(2, at("2026-04-03")).is_some(),
            "past the deadline"
        );
        assert_eq!(r.refuses_extension(2, at("2026-04-02")), None);
        r.months += 2;
        r.extension = Some(Extension {
            months: 2,
            by: "dpo".into(),
            reason: "complex".into(),
            at: at("2026-03-10"),
        });
        assert_eq!(r.deadline(), day("2026-06-02"));
        assert!(
            r.refuses_extension(1, at("2026-03-11"))
                .unwrap()
                .contains("one extension")
        );
    }
}
