//! Before a pods phase restarts anything, the bundle its new pods will mount must already be published.
//!
//! After a host phase restarts the controller-manager, it republishes `kube-root-ca.crt` in every
//! namespace (and `ca.crt` in legacy token Secrets) only once it leads again, 15-20 s later on a real
//! cluster. Pods created before then mount the previous bundle: in pods-trust-both-cas that is the old
//! CA alone, and such pods stop trusting the API server once update-certs re-issues its certificate.

use std::collections::BTreeSet;

use tokio::time::Instant;
use tracing::info;

use crate::cluster::{Cluster, PublishedBundle};

use super::context::{Backoff, PhaseContext, PhaseError};

/// The certificates of a bundle, as a set: the publisher copies the file, but the order of a bundle
/// does not change what it trusts.
fn certificates(pem: &str) -> BTreeSet<Vec<u8>> {
    dc_certs::pem_certificates(pem)
        .map(|ders| ders.into_iter().collect())
        .unwrap_or_default()
}

/// The places whose bundle trusts other certificates than `want`.
pub fn stale<'a>(bundles: &'a [PublishedBundle], want: &BTreeSet<Vec<u8>>) -> Vec<&'a str> {
    bundles
        .iter()
        .filter(|b| &certificates(&b.ca_pem) != want)
        .map(|b| b.place.as_str())
        .collect()
}

/// Waits until every published copy holds exactly `bundle_pem`, reporting once that it waits; fails
/// after the component timeout naming a copy that still differs.
pub async fn wait<C: Cluster>(
    cx: &PhaseContext<'_, C>,
    bundle_pem: &str,
) -> Result<(), PhaseError> {
    let want = certificates(bundle_pem);
    let started = Instant::now();
    let deadline = started + cx.settings.component_timeout;
    let mut backoff = Backoff::new(cx.settings.poll);
    let mut reported = false;
    loop {
        let bundles = cx.cluster.published_bundles().await?;
        let stale = stale(&bundles, &want);
        let Some(first) = stale.first() else {
            if reported {
                info!(waited = ?started.elapsed(), "trust bundle published everywhere");
            }
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(PhaseError::NotPublished {
                waited: cx.settings.component_timeout,
                stale: stale.len(),
                total: bundles.len(),
                first: (*first).to_owned(),
            });
        }
        if !reported {
            cx.journal.progress(
                None,
                0,
                format!(
                    "waiting for the controller-manager to publish the trust bundle: {} of {} copies differ ({first})",
                    stale.len(),
                    bundles.len()
                ),
            )?;
            reported = true;
        }
        backoff.sleep(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(cn: &str) -> String {
        dc_certs::authority::NewRootCa {
            subject: Some(dc_certs::Subject::parse(&format!("CN={cn}")).unwrap()),
            expiry: None,
        }
        .generate(90 * 86400, dc_certs::now())
        .unwrap()
        .cert_pem()
        .to_owned()
    }

    #[test]
    fn a_copy_is_stale_unless_it_trusts_exactly_the_bundle_in_any_order() {
        let (old, new) = (ca("old"), ca("new"));
        let copy = |place: &str, pem: String| PublishedBundle {
            place: place.into(),
            ca_pem: pem,
        };
        let bundles = [
            copy("ConfigMap a/kube-root-ca.crt", format!("{new}{old}")),
            copy("ConfigMap b/kube-root-ca.crt", old.clone()),
            copy("Secret b/default-token-x", String::new()),
            copy("ConfigMap c/kube-root-ca.crt", format!("{old}{new}{new}")),
        ];
        let both = certificates(&format!("{old}{new}"));
        assert_eq!(
            stale(&bundles, &both),
            ["ConfigMap b/kube-root-ca.crt", "Secret b/default-token-x"]
        );
        assert_eq!(stale(&bundles, &certificates(&new)).len(), 4);
    }
}
