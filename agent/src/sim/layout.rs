//! Where the simulated cluster keeps its files in the agent's data dir: `cluster/state.json` (the model)
//! and `cluster/hosts/<host>/` followed by each host directory's real path, so every host file sits
//! where kubeadm would put it.

use std::path::{Path, PathBuf};

use dc_certs::files::{PRIVATE, PUBLIC, create_private_dir, write_atomic};

use crate::cluster::{HostDir, HostFile};

use super::error::{SimError, io_error};

/// The simulated cluster's directory in the agent's data dir.
pub fn cluster_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster")
}

/// The persisted model.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Where the model is written before it is renamed over [`state_file`].
pub fn state_temp_file(dir: &Path) -> PathBuf {
    dir.join(".state.json.tmp")
}

/// Where a host's directory lives: `hosts/<host>/` plus the real path.
pub fn host_dir(dir: &Path, host: &str, which: HostDir) -> PathBuf {
    let host = dir.join("hosts").join(host);
    match which {
        HostDir::Kubernetes => host.join("etc/kubernetes"),
        HostDir::KubeletPki => host.join("var/lib/kubelet/pki"),
    }
}

/// Where a host file lives.
pub fn host_path(dir: &Path, host: &str, file: HostFile) -> PathBuf {
    host_dir(dir, host, file.dir()).join(file.path())
}

/// Writes a host file atomically, owner-only when `private`, creating its directory.
pub fn write_host_file(path: &Path, contents: &str, private: bool) -> Result<(), SimError> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(io_error(parent))?;
    }
    write_atomic(
        path,
        contents.as_bytes(),
        if private { PRIVATE } else { PUBLIC },
    )
    .map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_sit_under_their_host_at_the_real_path() {
        let dir = Path::new("/data/cluster");
        assert_eq!(
            host_path(dir, "controller-0", HostFile::CaCert),
            Path::new("/data/cluster/hosts/controller-0/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(
            host_path(dir, "worker-1", HostFile::KubeletClientCurrent),
            Path::new(
                "/data/cluster/hosts/worker-1/var/lib/kubelet/pki/kubelet-client-current.pem"
            )
        );
    }
}
