//! Deterministic simulator for Sentinel Mesh.
//!
//! It drives the very `Node` state machine the daemon runs (from
//! `sentinel-protocol`) on a discrete-event engine with a virtual clock and a
//! network model, so protocol changes are measured at thousands of nodes
//! before they reach real machines. A run is a function of its scenario file
//! and seed: the engine hashes every delivery into a trace hash that two runs
//! must agree on.
//!
//! - [`scenario`]: the TOML scenario format.
//! - [`engine`]: the event loop, network model, faults and crypto modes.
//! - [`adversary`]: the attack library and its labels; [`detect`]: scoring
//!   requests batched per simulated second, datasets.
//! - [`metrics`]: ground-truth measurement (who should have got what).
//! - [`report`]: JSON, Markdown and SVG output.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod adversary;
pub mod detect;
pub mod engine;
pub mod metrics;
pub mod report;
pub mod scenario;

pub use engine::Sim;
pub use report::RunReport;
pub use scenario::Scenario;
