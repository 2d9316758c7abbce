//! The legal orders in force (holds, erasure requests) as a pass reads
//! them from the ledger, checked against its hash chain first.

use super::PassError;
use crate::config::Settings;
use crate::decide::Orders;
use crate::ledger::Ledger;

const CONTEXT: &str = "cannot read the legal holds and erasure requests; nothing was deleted";

/// Checks of the index against the chain while other processes append.
const INDEX_CHECKS: u64 = 8;

/// The legal orders in force, read from the ledger; none if there is no
/// ledger yet (a SQLite file that does not exist cannot hold any).
pub async fn read_orders(settings: &Settings) -> Result<Orders, PassError> {
    if let Some(path) = crate::ledger::sqlite_path(&settings.database)
        && !path.exists()
    {
        return Ok(Orders::default());
    }
    let ledger = Ledger::open(&settings.database)
        .await
        .map_err(PassError::ledger(
            "cannot read the legal holds and erasure requests",
        ))?;
    let orders = orders_from(&ledger).await;
    ledger.close().await;
    orders
}

/// The legal orders in force, from an open ledger.
pub async fn orders_from(ledger: &Ledger) -> Result<Orders, PassError> {
    // The holds and erasures a pass relies on come from index tables: they
    // must agree with the hash chain, or an edited index could let a held
    // recording go.
    // The check reads the chain, then the index: a hold placed or released
    // by another process in between shows as a difference that is none.
    // Such a check is made again; a difference read while no row was
    // appended is one.
    for attempt in 1.. {
        let (before, _) = ledger.head().await.map_err(PassError::ledger(CONTEXT))?;
        let problems = ledger
            .verify_indexes()
            .await
            .map_err(PassError::ledger(CONTEXT))?;
        if problems.is_empty() {
            break;
        }
        let (after, _) = ledger.head().await.map_err(PassError::ledger(CONTEXT))?;
        if after == before || attempt >= INDEX_CHECKS {
            return Err(PassError::IndexDiffers(problems.join("; ")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
    }
    Ok(Orders {
        holds: ledger
            .active_holds()
            .await
            .map_err(PassError::ledger(CONTEXT))?,
        erasures: ledger
            .erasures()
            .await
            .map_err(PassError::ledger(CONTEXT))?,
        only_subject: None,
        requests: ledger
            .requests()
            .await
            .map_err(PassError::ledger(CONTEXT))?,
    })
}
