//! Test support shared by the multi-process integration tests, the demo and the benchmark: locating the
//! real binaries, children that are always cleaned up, and a system PKI in a temporary directory.
//!
//! Nothing here is compiled into the product binaries' libraries; it is a separate crate so test doubles
//! never leak into production code.

pub mod fleet;
pub mod pki;
pub mod process;

pub use pki::TestPki;
pub use process::{Child, bin_path};
