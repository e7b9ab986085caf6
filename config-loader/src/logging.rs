//! How every dc-rootca binary logs: one `tracing` subscriber set up here, so the controller, the agent and
//! the tools agree on `--log-format`, `RUST_LOG` and colours.
//!
//! - `text` (the default): human lines; ANSI colours only when stderr is a terminal (and `NO_COLOR` is
//!   unset), so journald and log files never receive escape codes.
//! - `json`: one JSON object per line for log shippers, with `level`, `target`, `message`, the event's
//!   fields, and the spans it happened in (`span`: the innermost, `spans`: all of them, outermost first,
//!   e.g. the agent's `subcloud` and the update's `phase`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The log line format (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The `--log-format` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// The logging options every binary that logs takes (`#[command(flatten)]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// The log line format on stderr: `text` for people, `json` for log shippers. The verbosity is
    /// `RUST_LOG` (e.g. `debug`, `info,dc_agent=debug`).
    #[arg(long, value_enum, default_value_t, env = "DC_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up logging: {0}")]
pub struct LogError(String);

/// Whether text lines get ANSI colours: only on a terminal, and never when the `NO_COLOR` convention
/// asks for none; JSON never carries them.
pub fn colours(format: LogFormat, terminal: bool, no_color: bool) -> bool {
    format == LogFormat::Text && terminal && !no_color
}

/// `RUST_LOG` when set and valid, else `default` (e.g. `"info"`).
fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// The subscriber: `format` lines written to `writer`, colours as asked.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Logs to stderr in `args`' format at `RUST_LOG` (else `default_filter`), for the rest of the process.
pub fn init(args: &LogArgs, default_filter: &str) -> Result<(), LogError> {
    let ansi = colours(
        args.log_format,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    );
    install(subscriber(
        args.log_format,
        filter(default_filter),
        std::io::stderr,
        ansi,
    ))
}

/// Logs text lines without colours to `writer` (a tool's own log file).
pub fn init_to<W>(writer: W, default_filter: &str) -> Result<(), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(subscriber(
        LogFormat::Text,
        filter(default_filter),
        writer,
        false,
    ))
}

/// Sets the process's subscriber, and routes the `log` records of dependencies (rustls, actix) to it.
fn install(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) -> Result<(), LogError> {
    subscriber.try_init().map_err(|e| LogError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn colours_only_for_text_on_a_terminal_without_no_color() {
        assert!(colours(LogFormat::Text, true, false));
        assert!(
            !colours(LogFormat::Text, false, false),
            "a file or journald"
        );
        assert!(!colours(LogFormat::Text, true, true), "NO_COLOR");
        assert!(!colours(LogFormat::Json, true, false));
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, ansi: bool) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone(), ansi);
        tracing::subscriber::with_default(sub, || {
            let _agent = tracing::info_span!("agent", subcloud = "sc-1").entered();
            let _phase = tracing::info_span!("phase", phase = "start").entered();
            tracing::info!(state = "running", "phase begins");
        });
        let bytes = out.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn json_lines_carry_level_target_message_and_the_span_fields() {
        let text = logged(LogFormat::Json, true);
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["message"], "phase begins", "{line}");
        assert_eq!(line["state"], "running", "{line}");
        assert!(line["target"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(line["span"]["phase"], "start", "{line}");
        assert_eq!(line["spans"][0]["subcloud"], "sc-1", "{line}");
        assert!(!text.contains('\x1b'), "{text}");
    }

    #[test]
    fn text_lines_carry_escape_codes_only_when_asked() {
        let plain = logged(LogFormat::Text, false);
        assert!(plain.contains("phase begins") && plain.contains("subcloud"));
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(logged(LogFormat::Text, true).contains('\x1b'));
    }
}
