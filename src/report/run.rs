//! A run's summary for people: what each store planned and did, what was
//! completed of an interrupted run, what stopped or troubled the run, the
//! erasure's receipt in words, and where the certificate went.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{bytes, printable};
use crate::pass::{ErasureOutcome, RunOutcome, StoreOutcome};

/// Writes the summary of a run (or dry run).
pub fn summary(out: &mut dyn Write, run: &RunOutcome) -> io::Result<()> {
    if run.dry_run {
        writeln!(
            out,
            "dry run {}: nothing was deleted or recorded",
            run.run_id
        )?;
    } else {
        writeln!(out, "run {}: {}", run.run_id, run.status)?;
    }
    let recovered = &run.recovered;
    if recovered.recordings_deleted + recovered.objects_deleted + recovered.failed > 0 {
        writeln!(
            out,
            "  completed an interrupted run: {} recordings, {} objects certified now; {} could not be completed",
            recovered.recordings_deleted, recovered.objects_deleted, recovered.failed
        )?;
    }
    let planned_only = run.dry_run || !run.breaches.is_empty();
    for p in &run.stores {
        store(out, p, planned_only)?;
    }
    for b in &run.breaches {
        writeln!(out, "  STOPPED by a safety limit, nothing was deleted: {b}")?;
    }
    for p in &run.problems {
        writeln!(out, "  problem: {p}")?;
    }
    if let Some(c) = &run.certificate {
        writeln!(out, "certificate: {c}")?;
    }
    if let Some(a) = &run.approved {
        writeln!(
            out,
            "approved plan sha256:{}: {} deletions approved; {} deletions due now were not in it and wait for approval",
            a.sha256, a.items, a.not_approved
        )?;
    }
    if let Some(e) = &run.erasure {
        erasure(out, e, run.dry_run, run.certificate.as_deref())?;
    }
    Ok(())
}

/// `name: count` pairs, comma-separated.
fn tally<K: std::fmt::Display, V: std::fmt::Display>(
    map: impl IntoIterator<Item = (K, V)>,
) -> String {
    let by: Vec<String> = map.into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    by.join(", ")
}

fn store(out: &mut dyn Write, p: &StoreOutcome, planned_only: bool) -> io::Result<()> {
    write!(out, "  store {} ({}): ", p.name, p.url)?;
    if let Some(e) = &p.error {
        return writeln!(out, "FAILED: {e}");
    }
    let stats = p.stats.clone().unwrap_or_default();
    if planned_only {
        writeln!(
            out,
            "would delete {} recordings ({}); {} kept, {} held, {} reported",
            stats.delete,
            bytes(stats.delete_bytes),
            stats.keep,
            stats.held,
            stats.report
        )?;
    } else {
        let r = &p.report;
        writeln!(
            out,
            "deleted {} recordings ({} objects, {}); {} already absent; {} failed; {} kept, {} held, {} reported",
            r.recordings_deleted,
            r.objects_deleted,
            bytes(r.bytes_deleted),
            r.already_absent,
            r.failed,
            stats.keep,
            stats.held + r.held,
            stats.report
        )?;
        if !r.deleted_by_purpose.is_empty() {
            writeln!(
                out,
                "    deleted by purpose: {}",
                tally(&r.deleted_by_purpose)
            )?;
        }
        for f in &r.failures {
            writeln!(out, "    failed: {f}")?;
        }
    }
    if let Some(c) = p.deletion.caveat() {
        writeln!(
            out,
            "    WARNING: {c} (deletions: {}, {})",
            p.deletion.mode, p.deletion.basis
        )?;
    }
    if !stats.report_by_code.is_empty() {
        writeln!(
            out,
            "    reported (kept, see `lethe plan`): {}",
            tally(&stats.report_by_code)
        )?;
    }
    Ok(())
}

fn erasure(
    out: &mut dyn Write,
    e: &ErasureOutcome,
    dry_run: bool,
    receipt: Option<&str>,
) -> io::Result<()> {
    let verb = if dry_run { "would erase" } else { "erasing" };
    writeln!(
        out,
        "erasure request {}: {verb} {} of the subject's recordings; {} of the subject's objects kept",
        e.request,
        e.erasing,
        e.protected.len()
    )?;
    if e.found_nothing() {
        writeln!(out, "  WARNING: {}", crate::certificate::NOTHING_FOUND)?;
    }
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &e.protected {
        *by_reason
            .entry(p.reason.as_deref().unwrap_or("-"))
            .or_default() += 1;
    }
    if !by_reason.is_empty() {
        writeln!(out, "  kept by reason: {}", tally(by_reason))?;
    }
    if dry_run {
        for (store, key) in &e.erased {
            writeln!(out, "  would erase {store}: {}", printable(key))?;
        }
        if e.erasing > e.erased.len() as u64 {
            writeln!(out, "  ... and {} more", e.erasing - e.erased.len() as u64)?;
        }
    }
    for p in &e.protected {
        let until = p
            .until
            .as_ref()
            .map(|u| format!(" until {u}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  kept {}: {}  ({}{until})",
            p.store,
            printable(&p.key),
            printable(&p.basis)
        )?;
    }
    if !dry_run {
        writeln!(out, "  {}", crate::certificate::LATER_RECORDINGS)?;
    }
    if let Some(r) = receipt {
        writeln!(out, "erasure receipt: {r}")?;
    }
    Ok(())
}
