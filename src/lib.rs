//! lethe: a retention-and-erasure worker for recorded customer calls.
//!
//! A recording travels one way through these modules, each depending only on
//! those before it: [`config`] and [`policy`] describe what to do; [`store`]
//! reaches the recordings; [`scan`] lists them; [`classify`] works out their
//! purposes and dates; [`hold`] describes legal holds; [`decide`] says keep,
//! hold, delete or report; [`claims`] keeps what something else still
//! claims; [`plan`] puts those stages together for one store; [`execute`]
//! deletes and verifies; [`ledger`] makes every step durable and
//! tamper-evident; [`certificate`] signs the result. [`pass`] owns a whole
//! pass (plan, run, certify, audit) as library calls with typed outcomes;
//! [`clock`] is where time enters. [`report`] renders for people and
//! scripts, [`telemetry`] exports figures, and [`cli`] parses arguments,
//! calls [`pass`] and maps its outcome to an exit code. See ARCHITECTURE.md.

pub mod certificate;
pub mod claims;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decide;
pub mod execute;
pub mod hold;
pub mod ledger;
pub mod pass;
pub mod plan;
pub mod policy;
pub mod report;
pub mod request;
pub mod scan;
pub mod store;
pub mod telemetry;
