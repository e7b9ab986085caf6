//! The messages. Every struct is encoded as a map (`to_vec_named`), every enum is internally tagged, and
//! new fields carry `#[serde(default)]`, so the protocol grows without breaking older peers.

use serde::{Deserialize, Serialize};

use crate::Phase;

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// Alarm raised while the cluster's root CA expires within the agent's threshold (FM 500.200).
pub const ALARM_ROOT_CA_EXPIRING_SOON: &str = "500.200";
/// Alarm raised once the cluster's root CA has expired (FM 500.210).
pub const ALARM_ROOT_CA_EXPIRED: &str = "500.210";
/// The entity of both alarms, as in StarlingX.
pub const ROOT_CA_ALARM_ENTITY: &str = "system.certificate.kubernetes-root-ca";

/// Agent → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AgentMessage {
    Hello(Hello),
    /// Boxed: the largest message by far, sent once per interval.
    Heartbeat(Box<Heartbeat>),
    Progress(Progress),
    PhaseResult(PhaseResult),
    Stopped(Stopped),
    Error(ErrorMessage),
    /// A certificate signing request for the agent's next certificate; sent only to a controller whose
    /// Welcome offered renewal. The key stays on the agent.
    RenewCertificate {
        csr_pem: String,
    },
}

/// Controller → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ControllerMessage {
    Welcome(Welcome),
    Command(Command),
    Error(ErrorMessage),
    /// A heartbeat arrived. Sent only to agents that said `heartbeat-ack` in their Hello: an agent
    /// hears from a live controller at least once per heartbeat interval, so silence means it is gone.
    HeartbeatAck,
    /// The agent's renewed certificate, signed for the subcloud its current certificate names.
    Certificate {
        cert_pem: String,
    },
    /// The renewal asked for is not granted (the link stays; the agent keeps its certificate).
    CertificateRefused {
        reason: String,
    },
}

/// The Hello capability of an agent that wants a [`ControllerMessage::HeartbeatAck`] per heartbeat.
pub const HEARTBEAT_ACK: &str = "heartbeat-ack";

/// The Hello capability of an agent that rolls back ([`UpdateParams::rollback`]): an older one would
/// take a rollback's start for an update's and finish the update instead, so it is never sent one.
pub const ROLLBACK: &str = "rollback";

/// The first message of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The subcloud the agent serves; must equal the name in its certificate.
    pub subcloud: String,
    pub agent_version: String,
    pub protocol_version: u32,
    /// Optional features the agent supports, e.g. `cert-file`, `kubernetes`, `simulated`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// The controller's answer to a good Hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub controller_version: String,
    pub protocol_version: u32,
    /// How often the agent should send heartbeats.
    pub heartbeat_interval_secs: u32,
    /// Whether this controller acknowledges each heartbeat (the agent asked, and it can): only then may
    /// the agent take silence for a dead controller. Absent from an older controller: false.
    #[serde(default)]
    pub heartbeat_acks: bool,
    /// Validity of the certificates this controller signs on [`AgentMessage::RenewCertificate`], in
    /// seconds; 0 (and absent, from an older controller) when it does not renew.
    #[serde(default)]
    pub certificate_lifetime_secs: u64,
}

/// Periodic facts about the subcloud; one is also sent right after the Welcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub sent_at: UnixTime,
    pub host: HostFacts,
    /// The root CA the cluster trusts now (the first one of the bundle during an update).
    pub root_ca: Option<RootCaInfo>,
    /// Raised alarms: [`ALARM_ROOT_CA_EXPIRING_SOON`], [`ALARM_ROOT_CA_EXPIRED`].
    #[serde(default)]
    pub alarms: Vec<Alarm>,
    /// Where the agent's update stands, so a controller that (re)connects knows without asking.
    #[serde(default)]
    pub update: Option<UpdateStatus>,
}

/// Host facts from sysinfo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub uptime_secs: u64,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub load_1m: f64,
    #[serde(default)]
    pub memory_total_bytes: u64,
    #[serde(default)]
    pub memory_used_bytes: u64,
}

/// A root CA certificate as the heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCaInfo {
    /// In dcmanager's form, `C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER`.
    pub subject: String,
    /// Lower-case hex.
    pub serial: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
}

/// A raised alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// FM alarm id, e.g. `500.200`.
    pub id: String,
    pub entity: String,
    pub severity: AlarmSeverity,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmSeverity {
    Major,
    Critical,
}

/// The agent's update as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub update_id: String,
    /// The phase in progress, or the last one reached.
    pub phase: Phase,
    /// The sysinv state name.
    pub state: String,
    /// Share of the whole update done, 0..=100.
    pub percent: u8,
    pub run: RunState,
    /// Sequence number of the last progress message sent for this update.
    pub last_seq: u64,
    /// When `run` last changed (began, resumed, stopped, failed, completed): how long an unfinished
    /// update has been waiting is what an operator weighs first.
    #[serde(default)]
    pub since: Option<UnixTime>,
    /// The new root CA this update generated (or was given), once the new-root-CA phase is done: a
    /// later strategy finishes the update with this CA, whose key never left the subcloud.
    #[serde(default)]
    pub new_ca: Option<RootCaInfo>,
    /// What the operator should know although the update goes on or completed (as
    /// [`PhaseResult::warnings`]), so an end learnt from a heartbeat or a reconnect says it too.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// This is a rollback to the old root CA, not an update: `phase` is the phase its current step
    /// undoes, `run` how the rollback runs or ended (completed: the old root CA alone everywhere).
    #[serde(default)]
    pub rollback: bool,
}

impl UpdateStatus {
    /// Whether the update stopped or is still going.
    pub fn unfinished(&self) -> bool {
        self.run != RunState::Completed
    }

    /// Whether it is unfinished past the point where hosts may trust its new CA: only finishing it
    /// brings the subcloud back to one root CA. (One stopped before the host phases changed nothing.)
    pub fn holds_hosts(&self) -> bool {
        self.unfinished() && self.phase >= Phase::HostsTrustBothCas
    }
}

/// Whether the agent's update is running or how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "run", rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Completed,
    /// Stopped after a phase by an abort; a later start resumes at `next`.
    Aborted {
        next: Phase,
    },
    /// A phase failed; a later start retries it.
    Failed {
        phase: Phase,
        reason: String,
    },
}

/// An order from the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// Start the update, or resume it at its first unfinished phase.
    Start {
        update_id: String,
        params: UpdateParams,
    },
    /// Finish the phase in progress, then stop; the update stays resumable.
    Abort { update_id: String },
}

/// The operator's parameters, as given to `kube-rootca-update-strategy create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateParams {
    /// dcmanager's subject form; the agent generates the CA from it, so the key never leaves the subcloud.
    #[serde(default)]
    pub subject: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub expiry_date: Option<String>,
    /// An uploaded CA: one PEM with the certificate and its private key.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Go on although some running pods are restarted by nothing the update does (bare pods, paused
    /// Deployments, pods of other controllers): they keep trusting the old CA alone and stop trusting
    /// the API server once update-certs re-issues its certificate. Without it the update refuses to
    /// start, and to begin update-certs, while any exists.
    #[serde(default)]
    pub proceed_with_stranded_pods: bool,
    /// The subcloud's effective strategy-config options (upstream's defaults when absent).
    #[serde(default)]
    pub options: crate::SubcloudOptions,
    /// Roll the unfinished update back to the old root CA instead of updating (`create --rollback`);
    /// the CA parameters do not apply.
    #[serde(default)]
    pub rollback: bool,
}

/// Progress within a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub update_id: String,
    /// Increases by one with every progress, phase-result and stopped message of the update.
    pub seq: u64,
    pub phase: Phase,
    /// The host the phase is acting on, for host phases.
    #[serde(default)]
    pub host: Option<String>,
    /// The sysinv state name.
    pub state: String,
    /// Share of this phase done, 0..=100.
    pub phase_percent: u8,
    /// Share of the whole update done, 0..=100.
    pub percent: u8,
    /// What is happening, for people: "restarted 12 of 40 workloads".
    pub details: String,
}

/// A phase ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseResult {
    pub update_id: String,
    pub seq: u64,
    pub phase: Phase,
    pub outcome: PhaseOutcome,
    /// The sysinv state name after the phase.
    pub state: String,
    pub percent: u8,
    /// What the operator should know although the phase succeeded (pods left trusting the old CA
    /// because the strategy said to proceed, say).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PhaseOutcome {
    Succeeded,
    Failed { reason: String },
}

/// The update stopped before its end because of an abort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub update_id: String,
    pub seq: u64,
    /// The phase a later start resumes at.
    pub next: Phase,
}

/// An error, sent before the sender closes the connection or refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorMessage {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The peers' protocol versions do not overlap.
    IncompatibleProtocol,
    /// The Hello names another subcloud than the certificate.
    IdentityMismatch,
    /// The certificate's subcloud is not registered.
    UnknownSubcloud,
    /// Another connection for the same subcloud replaced this one.
    Replaced,
    /// A message could not be decoded or was out of place.
    BadMessage,
    /// A command was refused (kept for the wire: this build's agent takes over or resumes instead).
    Refused,
    /// The agent's certificate was revoked (its subcloud was deleted after it was issued).
    Revoked,
    Internal,
    /// The controller is a standby (another controller leads): the agent tries its next address.
    NotLeader,
    /// A code this build does not know.
    #[serde(other)]
    Unknown,
}
