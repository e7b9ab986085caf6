//! Agent certificates renew themselves: a controller holding the system CA's key signs a short-lived
//! certificate for the key a real agent generates, over the agent's own mutual-TLS link; the agent
//! keeps it across restarts, and the long-lived certificate of the install is revoked once the new
//! one is in use.

mod common;

use std::time::Duration;

use common::{Event, Harness, in_process_agent, run_agents, stop_agents};
use dc_certs::inspect::CertSummary;
use dc_protocol::ErrorCode;

const DAYS: u32 = 30;

#[actix_web::test]
async fn an_agent_renews_over_its_link_and_the_installed_certificate_is_revoked() {
    let mut h = Harness::with(600, |c| {
        c.pki.ca_key = Some(c.pki.ca.with_file_name(dc_certs::pki::CA_KEY));
        c.agents.certificate_days = DAYS;
    })
    .await;
    h.register("s1").await;
    let addr = h.ctl().agents_addr.to_string();
    let config = in_process_agent(&h, "s1", &addr, false);
    let agents = run_agents(vec![config.clone()]);
    // The certificate of the install (five years), kept aside.
    let installed = h.pki.root().join("installed-s1");
    copy_dir(&h.pki.root().join("agents/s1"), &installed);

    let renewed = h.pki.root().join("agents/s1/data/tls/renewed.pem");
    let pem = wait_for_file(&renewed).await;
    let cert = CertSummary::from_pem(&pem).expect("renewed certificate");
    assert_eq!(cert.common_name.as_deref(), Some("s1"));
    let days = (cert.not_after - dc_certs::now()) / 86_400;
    assert!(
        (DAYS as i64 - 1..=DAYS as i64).contains(&days),
        "{days} days"
    );
    assert!(
        pem.contains("PRIVATE KEY"),
        "the key sits with its certificate"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&renewed).expect("renewed").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Restarted, the agent comes back with the renewed certificate.
    stop_agents(agents).await;
    h.wait_status(|s| s.reporting == 0).await;
    let agents = run_agents(vec![config]);
    h.wait_status(|s| s.reporting == 1).await;

    // The installed certificate no longer gets in, before or after a controller restart; meanwhile
    // the agent, on its renewed certificate, asked for no other.
    let _old = h.agent_with(&installed, "s1", None);
    h.wait_event("s1", Event::Refused(ErrorCode::Revoked)).await;
    assert_eq!(std::fs::read_to_string(&renewed).expect("renewed"), pem);
    stop_agents(agents).await;
    h.restart().await;
    let _old = h.agent_with(&installed, "s1", None);
    h.wait_event("s1", Event::Refused(ErrorCode::Revoked)).await;
}

/// Waits until `path` exists and returns its content.
async fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for name in ["ca.crt", "agent.crt", "agent.key"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy");
    }
}
