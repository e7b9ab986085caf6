//! Test support shared by the multi-process integration tests, the demo and the benchmark: locating the
//! real binaries, children that are always cleaned up, a system PKI in a temporary directory, a small
//! tmpfs to fill, a Kubernetes API served over a simulated cluster with a runner for the real kubectl, and a
//! real Kubernetes control plane (`control_plane`) with the static-pod runner and stand-in kubelet it is run by, and
//! a real OpenStack Keystone (`keystone`), a real headless Chromium (`browser`), and a throwaway real PostgreSQL
//! (`postgres`).
//!
//! Nothing here is compiled into the product binaries' libraries; it is a separate crate so test doubles
//! never leak into production code.

pub mod browser;
pub mod control_plane;
pub mod fleet;
pub mod keystone;
pub mod kube_api;
pub mod kubectl;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod stand_in_kubelet;
pub mod static_pods;
pub mod tmpfs;

pub use kubectl::{KubectlError, kubectl};
pub use pki::TestPki;
pub use process::{Child, bin_path};
