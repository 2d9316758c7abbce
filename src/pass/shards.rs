//! The safety limits belong to the pass, not to a shard: the shards of a
//! pass record their plans' counts in the ledger and check the limits on
//! the sum, once all of them have planned, before any of them deletes.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::info;

use super::PassError;
use super::stores::StorePass;
use crate::decide::{Shard, StoreStats};
use crate::ledger::{Ledger, ShardPlan};

/// Records this shard's plan and waits until every shard of its pass has
/// recorded one; returns the pass's totals per store, or (as a safety
/// breach: nothing is deleted) why they could not be had in time.
pub(super) async fn whole_pass(
    ledger: &Ledger,
    run_id: &str,
    pass: &str,
    shard: Shard,
    passes: &[StorePass],
    wait: Duration,
    stopping: &dyn Fn() -> bool,
) -> Result<Result<Vec<(String, StoreStats)>, String>, PassError> {
    let plan = ShardPlan {
        pass: pass.to_string(),
        shard: shard.index,
        of: shard.count,
        stores: passes
            .iter()
            .filter_map(|p| {
                let s = p.outcome.stats.as_ref()?;
                Some((p.outcome.name.clone(), (s.delete, s.recordings)))
            })
            .collect(),
    };
    ledger
        .record_shard_plan(run_id, &plan)
        .await
        .map_err(PassError::ledger(
            "cannot record this shard's plan; nothing was deleted",
        ))?;
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let plans = ledger.shard_plans(pass).await.map_err(PassError::ledger(
            "cannot read the other shards' plans; nothing was deleted",
        ))?;
        if plans.len() as u32 >= shard.count {
            info!(
                pass,
                shards = shard.count,
                "every shard of the pass has planned"
            );
            return Ok(Ok(totals(&plans)));
        }
        if started.elapsed() >= wait || stopping() {
            let missing: Vec<String> = (0..shard.count)
                .filter(|i| !plans.contains_key(i))
                .map(|i| format!("{i}/{}", shard.count))
                .collect();
            return Ok(Err(format!(
                "shards {} of this pass did not plan within {} (shard_wait), so the pass's size is unknown; run all {} shards at once (an Indexed Job with parallelism = completions)",
                missing.join(", "),
                humantime::format_duration(wait),
                shard.count
            )));
        }
        if !said {
            info!(
                pass,
                shards = shard.count,
                planned = plans.len(),
                "waiting for the other shards of the pass to plan"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pass's counts per store, summed over its shards' plans.
fn totals(plans: &BTreeMap<u32, ShardPlan>) -> Vec<(String, StoreStats)> {
    let mut totals: BTreeMap<String, StoreStats> = BTreeMap::new();
    for p in plans.values() {
        for (store, (delete, recordings)) in &p.stores {
            let t = totals.entry(store.clone()).or_default();
            t.delete += delete;
            t.recordings += recordings;
        }
    }
    totals.into_iter().collect()
}
