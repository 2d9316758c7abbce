//! Rendering for people and scripts: plans (text or JSON, streamed item by
//! item so that a million-object plan never sits in memory) and run summaries.
//! Everything is written to a `&mut dyn Write` so that tests can capture it;
//! stdout carries only this data, logs go to stderr.

pub mod run;

use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::decide::{Action, Planned, StoreStats, fmt_time};
use crate::policy::PolicyFile;
use crate::store::DeletionStatement;

/// Makes a key (or a reason, which may quote one) safe to print on a
/// terminal, one line each: control characters, newlines included, are escaped.
pub fn printable(key: &str) -> String {
    if !key.chars().any(char::is_control) {
        return key.to_string();
    }
    key.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Human-readable byte counts.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A plan being written, one store and one item at a time.
pub trait PlanSink {
    /// `notices`: things a person must look at (holds past their review date).
    fn begin(
        &mut self,
        as_of: DateTime<Utc>,
        policies: &[PolicyFile],
        notices: &[String],
    ) -> io::Result<()>;
    /// `deletion` is `None` when the store could not be opened.
    fn store_begin(
        &mut self,
        name: &str,
        url: &str,
        deletion: Option<&DeletionStatement>,
    ) -> io::Result<()>;
    fn item(&mut self, item: &Planned) -> io::Result<()>;
    fn store_end(&mut self, stats: &StoreStats, error: Option<&str>) -> io::Result<()>;
    fn end(&mut self, breaches: &[String], limits: Limits) -> io::Result<()>;
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub max_deletions: u64,
    pub max_fraction: f64,
}

pub struct TextPlan<'w> {
    out: &'w mut dyn Write,
    totals: StoreStats,
}

impl<'w> TextPlan<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        Self {
            out,
            totals: StoreStats::default(),
        }
    }
}

fn join_counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{} {v}", if k.is_empty() { "-" } else { k }))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PlanSink for TextPlan<'_> {
    fn begin(
        &mut self,
        as_of: DateTime<Utc>,
        policies: &[PolicyFile],
        notices: &[String],
    ) -> io::Result<()> {
        writeln!(
            self.out,
            "lethe plan as of {} (a plan deletes nothing)",
            fmt_time(Some(as_of))
        )?;
        for p in policies {
            writeln!(self.out, "policy {} sha256:{}", p.name, p.sha256)?;
        }
        for n in notices {
            writeln!(self.out, "NOTICE: {n}")?;
        }
        Ok(())
    }

    fn store_begin(
        &mut self,
        name: &str,
        url: &str,
        deletion: Option<&DeletionStatement>,
    ) -> io::Result<()> {
        writeln!(self.out, "\nstore {name} ({url})")?;
        if let Some(d) = deletion {
            writeln!(self.out, "  deletions: {} ({})", d.mode, d.basis)?;
            if let Some(caveat) = d.caveat() {
                writeln!(self.out, "  WARNING: {caveat}")?;
            }
        }
        Ok(())
    }

    fn item(&mut self, item: &Planned) -> io::Result<()> {
        let label = match item.action {
            Action::Delete => "DELETE",
            Action::Keep => "KEEP  ",
            Action::Hold => "HOLD  ",
            Action::Report => "REPORT",
        };
        write!(
            self.out,
            "  {label} {}  {}",
            printable(&item.key),
            printable(&item.reason)
        )?;
        if item.action == Action::Delete {
            if !item.sidecars.is_empty() {
                write!(
                    self.out,
                    "; with sidecar {}",
                    item.sidecars
                        .iter()
                        .map(|s| printable(&s.key))
                        .collect::<Vec<_>>()
                        .join(", ")
                )?;
            }
            match &item.companion_objects {
                // Known from the listing: the companions it deletes.
                Some(listed) if !listed.is_empty() => write!(
                    self.out,
                    "; with companion {}",
                    listed
                        .iter()
                        .map(|c| printable(&c.key))
                        .collect::<Vec<_>>()
                        .join(", ")
                )?,
                Some(_) => {}
                None if item.companions.is_empty() => {}
                None => write!(
                    self.out,
                    "; with companions if present: {}",
                    item.companions
                        .iter()
                        .map(|c| printable(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                )?,
            }
        }
        for k in &item.kept {
            write!(
                self.out,
                "\n      KEEP {}  kept: {}",
                printable(&k.key),
                printable(&k.claim)
            )?;
        }
        writeln!(self.out)
    }

    fn store_end(&mut self, stats: &StoreStats, error: Option<&str>) -> io::Result<()> {
        if let Some(e) = error {
            writeln!(self.out, "  ERROR  {}", printable(e))?;
            writeln!(self.out, "  nothing in this store will be deleted")?;
            return Ok(());
        }
        writeln!(
            self.out,
            "  summary: {} to delete ({}), {} kept, {} held, {} reported; {} objects listed, of which {} sidecars/companions",
            stats.delete,
            bytes(stats.delete_bytes),
            stats.keep,
            stats.held,
            stats.report,
            stats.listed,
            stats.owned
        )?;
        if !stats.held_by_case.is_empty() {
            writeln!(
                self.out,
                "  held by case: {}",
                join_counts(&stats.held_by_case)
            )?;
        }
        if !stats.delete_by_purpose.is_empty() {
            writeln!(
                self.out,
                "  delete by purpose: {}",
                join_counts(&stats.delete_by_purpose)
            )?;
        }
        if !stats.keep_by_purpose.is_empty() {
            writeln!(
                self.out,
                "  keep by purpose: {}; next expiry {}",
                join_counts(&stats.keep_by_purpose),
                fmt_time(stats.next_expiry)
            )?;
        }
        if !stats.report_by_code.is_empty() {
            writeln!(
                self.out,
                "  reported (kept, need attention): {}",
                join_counts(&stats.report_by_code)
            )?;
        }
        self.totals.delete += stats.delete;
        self.totals.keep += stats.keep;
        self.totals.report += stats.report;
        Ok(())
    }

    fn end(&mut self, breaches: &[String], limits: Limits) -> io::Result<()> {
        writeln!(
            self.out,
            "\ntotal: {} to delete, {} kept, {} reported",
            self.totals.delete, self.totals.keep, self.totals.report
        )?;
        if breaches.is_empty() {
            writeln!(
                self.out,
                "safety: within limits (max_deletions {}, max_fraction {})",
                limits.max_deletions, limits.max_fraction
            )
        } else {
            for b in breaches {
                writeln!(
                    self.out,
                    "safety: a run would stop here and delete nothing: {b}"
                )?;
            }
            Ok(())
        }
    }
}

/// One JSON document, written incrementally:
/// `{"as_of":..,"policies":[..],"stores":[{"name":..,"url":..,"items":[..],"stats":{..}}],"safety":{..}}`.
pub struct JsonPlan<'w> {
    out: &'w mut dyn Write,
    first_store: bool,
    first_item: bool,
}

impl<'w> JsonPlan<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        Self {
            out,
            first_store: true,
            first_item: true,
        }
    }
}

impl PlanSink for JsonPlan<'_> {
    fn begin(
        &mut self,
        as_of: DateTime<Utc>,
        policies: &[PolicyFile],
        notices: &[String],
    ) -> io::Result<()> {
        let policies: Vec<_> = policies
            .iter()
            .map(|p| json!({"file": p.name, "sha256": p.sha256}))
            .collect();
        write!(
            self.out,
            "{{\"as_of\":{},\"policies\":{},\"notices\":{},\"stores\":[",
            json!(fmt_time(Some(as_of))),
            json!(policies),
            json!(notices)
        )
    }

    fn store_begin(
        &mut self,
        name: &str,
        url: &str,
        deletion: Option<&DeletionStatement>,
    ) -> io::Result<()> {
        if !self.first_store {
            write!(self.out, ",")?;
        }
        self.first_store = false;
        self.first_item = true;
        let deletion =
            deletion.map(|d| json!({"mode": d.mode, "basis": d.basis, "caveat": d.caveat()}));
        write!(
            self.out,
            "{{\"name\":{},\"url\":{},\"deletion\":{},\"items\":[",
            json!(name),
            json!(url),
            json!(deletion)
        )
    }

    fn item(&mut self, item: &Planned) -> io::Result<()> {
        if !self.first_item {
            write!(self.out, ",")?;
        }
        self.first_item = false;
        serde_json::to_writer(&mut *self.out, item).map_err(io::Error::other)
    }

    fn store_end(&mut self, stats: &StoreStats, error: Option<&str>) -> io::Result<()> {
        write!(self.out, "],\"stats\":")?;
        serde_json::to_writer(&mut *self.out, stats).map_err(io::Error::other)?;
        write!(self.out, ",\"error\":{}}}", json!(error))
    }

    fn end(&mut self, breaches: &[String], limits: Limits) -> io::Result<()> {
        let safety = json!({"ok": breaches.is_empty(), "breaches": breaches, "limits": limits});
        writeln!(self.out, "],\"safety\":{safety}}}")
    }
}
