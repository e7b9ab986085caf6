//! The fleet benchmark's parts: `dc-fleet-bench` (src/main.rs) runs a real controller process against
//! many in-process agents and reports how the orchestration scales. The pure parts live here, each
//! with its tests: the database choice, the ideal schedule, progress-latency matching, `/proc` readings, a small HTTP client
//! for the REST API, the step follower (over the event stream), the agents' own work, and the figures with their table.

pub mod database;
pub mod dcmanager;
pub mod figures;
pub mod follower;
pub mod http;
pub mod latency;
pub mod procstat;
pub mod schedule;
pub mod work;
