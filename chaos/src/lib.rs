//! The chaos campaign's pure parts: a seeded generator, the fault plan drawn from it, and the figures
//! a run reports. The driver (`src/main.rs`) injects the plan into a real fleet.

pub mod figures;
pub mod plan;
pub mod rng;
