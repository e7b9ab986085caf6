//! The one layered configuration loader of the agent and the controller: a TOML file, then environment
//! variables over it (`<PREFIX>__<SECTION>__<KEY>`, e.g. `DC_CONTROLLER__API__LISTEN`).
//!
//! The loader knows nothing of either binary's settings: each deserializes into its own types, which
//! carry `#[serde(deny_unknown_fields)]` so a misspelt key (`[apii]`) stops the start with an error that
//! names it instead of being silently ignored.
//!
//! [`logging`] is the other half of how a binary is set up at its start: `--log-format` and `RUST_LOG`.

pub mod logging;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration could not be loaded; the message names the file and the offending key.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the configuration {path}: {source}")]
pub struct ConfigError {
    pub path: PathBuf,
    /// Boxed: `config`'s error is large, and every `Result` of the loader would carry its size.
    #[source]
    pub source: Box<config::ConfigError>,
}

impl ConfigError {
    /// A configuration that loaded but cannot work, in the same words as a load error.
    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            source: Box::new(config::ConfigError::Message(message.into())),
        }
    }
}

/// Reads `file` (TOML) and overlays the environment variables that start with `<env_prefix>__`.
/// `lists` names the settings (dotted and lower-case, `controller.addresses`) that are lists: in the
/// environment their value is comma-separated (`DC_AGENT__CONTROLLER__ADDRESSES=a:1,b:2`), while every
/// other value stays one string even when it holds a comma.
pub fn load<T: DeserializeOwned>(
    file: &Path,
    env_prefix: &str,
    lists: &[&str],
) -> Result<T, ConfigError> {
    load_with(file, env_prefix, lists, None)
}

/// [`load`] with the environment given as a map (`None`: the process's own), so tests need not
/// change the process environment.
fn load_with<T: DeserializeOwned>(
    file: &Path,
    env_prefix: &str,
    lists: &[&str],
    env: Option<config::Map<String, String>>,
) -> Result<T, ConfigError> {
    let environment = config::Environment::with_prefix(env_prefix)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true);
    // Without list keys the config crate would split every value (a path becomes a sequence of one).
    let environment = if lists.is_empty() {
        environment
    } else {
        lists
            .iter()
            .fold(environment.list_separator(","), |environment, key| {
                environment.with_list_parse_key(key)
            })
    };
    config::Config::builder()
        .add_source(config::File::from(file).format(config::FileFormat::Toml))
        .add_source(environment.source(env))
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|source| ConfigError {
            path: file.to_owned(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        api: Api,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Api {
        listen: String,
        workers: u32,
        #[serde(default)]
        peers: Vec<String>,
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn the_environment_overlays_the_file_and_is_parsed() {
        let (_dir, path) = file("[api]\nlisten = \"a:1\"\nworkers = 1\n");
        let env = [("DC_TEST__API__WORKERS".to_owned(), "3".to_owned())];
        let s: Settings =
            load_with(&path, "DC_TEST", &[], Some(env.into_iter().collect())).expect("load");
        assert_eq!((s.api.listen.as_str(), s.api.workers), ("a:1", 3));
    }

    #[test]
    fn without_list_settings_a_string_from_the_environment_stays_a_string() {
        let (_dir, path) = file("[api]\nlisten = \"a:1\"\nworkers = 1\n");
        let env = [("DC_TEST__API__LISTEN".to_owned(), "/tmp/x.ready".to_owned())];
        let s: Settings =
            load_with(&path, "DC_TEST", &[], Some(env.into_iter().collect())).expect("load");
        assert_eq!(s.api.listen, "/tmp/x.ready");
    }

    #[test]
    fn a_list_setting_is_comma_separated_in_the_environment_and_other_strings_are_not_split() {
        let (_dir, path) = file("[api]\nlisten = \"a:1\"\nworkers = 1\npeers = [\"x:9\"]\n");
        let env = [
            ("DC_TEST__API__PEERS".to_owned(), "a:1,b:2".to_owned()),
            ("DC_TEST__API__LISTEN".to_owned(), "c:3,d:4".to_owned()),
        ];
        let s: Settings = load_with(
            &path,
            "DC_TEST",
            &["api.peers"],
            Some(env.into_iter().collect()),
        )
        .expect("load");
        assert_eq!(s.api.peers, vec!["a:1".to_owned(), "b:2".to_owned()]);
        assert_eq!(s.api.listen, "c:3,d:4");
        // One address is a list of one.
        let env = [("DC_TEST__API__PEERS".to_owned(), "a:1".to_owned())];
        let s: Settings = load_with(
            &path,
            "DC_TEST",
            &["api.peers"],
            Some(env.into_iter().collect()),
        )
        .expect("load");
        assert_eq!(s.api.peers, vec!["a:1".to_owned()]);
    }

    #[test]
    fn an_unknown_section_is_refused_by_name() {
        let (_dir, path) = file("[apii]\nlisten = \"a:1\"\n[api]\nlisten = \"a:1\"\nworkers = 1\n");
        let e = load_with::<Settings>(&path, "DC_TEST", &[], Some(config::Map::new()))
            .expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("unknown field `apii`"), "{text}");
        assert!(text.contains("c.toml"), "{text}");
    }
}
