//! The example at the end of each command's help: real commands, with the names the demo
//! (`dc-demo`: subclouds `subcloud1`…) and these examples themselves create (the group `edge`), so
//! an operator can paste them. `tests/tests/cli_examples.rs` runs every one against a real
//! controller; the unit test below checks each parses as the command it documents.

/// One example, under the heading clap's own help uses.
macro_rules! example {
    ($($line:literal),+) => {
        concat!("Example:", $("\n  dcmanager ", $line),+)
    };
}

pub const DCMANAGER: &str = concat!(
    "Environment: DCMANAGER_URL, OS_AUTH_TOKEN and OS_CACERT set the connection options; \
     CLI_CONFIRMATIONS=enabled makes apply and the deletes ask first.\n\n",
    "Examples:\n",
    "  export DCMANAGER_URL=http://127.0.0.1:8119/v1.0 OS_AUTH_TOKEN=<admin token>\n",
    "  dcmanager subcloud list\n",
    "  dcmanager kube-rootca-update-strategy create --subject 'C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER' --expiry-date 2035-12-31\n",
    "  dcmanager kube-rootca-update-strategy apply --yes\n",
    "  dcmanager strategy-step list --watch"
);

pub const STRATEGY_CREATE: &str = example!(
    "kube-rootca-update-strategy create --subject 'C=CA ST=ON L=OTT O=WR OU=STX CN=OTHER' --expiry-date 2035-12-31 --max-parallel-subclouds 3"
);
pub const STRATEGY_APPLY: &str = example!("kube-rootca-update-strategy apply --yes");
pub const STRATEGY_ABORT: &str = example!("kube-rootca-update-strategy abort");
pub const STRATEGY_SHOW: &str = example!("kube-rootca-update-strategy show --watch");
pub const STRATEGY_DELETE: &str = example!("kube-rootca-update-strategy delete --yes");
pub const STEP_LIST: &str = example!("strategy-step list --watch --interval 2");
pub const STEP_SHOW: &str = example!("strategy-step show subcloud1");
pub const SUBCLOUD_LIST: &str = example!("subcloud list -c name -c sync");
pub const SUBCLOUD_SHOW: &str =
    example!("subcloud show subcloud1 -c kube-rootca_sync_status -f value");
pub const SUBCLOUD_ERRORS: &str = example!("subcloud errors subcloud1");
pub const SUBCLOUD_ADD: &str =
    example!("subcloud add --name subcloud9 --description 'Ottawa Site' --location YOW");
pub const SUBCLOUD_UPDATE: &str =
    example!("subcloud update subcloud1 --description 'Ottawa Site' --location YOW --group edge");
pub const SUBCLOUD_MANAGE: &str = example!("subcloud manage subcloud1");
pub const SUBCLOUD_UNMANAGE: &str = example!("subcloud unmanage subcloud1");
pub const SUBCLOUD_DELETE: &str = example!("subcloud delete subcloud9 --yes");
pub const GROUP_ADD: &str = example!(
    "subcloud-group add --name edge --description 'Edge sites' --update_apply_type serial --max_parallel_subclouds 4"
);
pub const GROUP_LIST: &str = example!("subcloud-group list");
pub const GROUP_SHOW: &str = example!("subcloud-group show edge");
pub const GROUP_UPDATE: &str = example!("subcloud-group update edge --max_parallel_subclouds 8");
pub const GROUP_LIST_SUBCLOUDS: &str =
    example!("subcloud-group list-subclouds edge -c name -c kube-rootca_sync_status");
pub const GROUP_DELETE: &str = example!("subcloud-group delete edge --yes");
pub const COMPLETION: &str = example!("completion bash");
pub const OPTIONS_UPDATE: &str = example!(
    "strategy-config update --worker-apply-type parallel --max-parallel-workers 4 subcloud1",
    "strategy-config update --alarm-restriction-type relaxed --max-parallel-workers 8"
);
pub const OPTIONS_SHOW: &str = example!("strategy-config show subcloud1");
pub const OPTIONS_LIST: &str = example!("strategy-config list");
pub const OPTIONS_DELETE: &str = example!("strategy-config delete subcloud1 --yes");

/// The words of a command line as a POSIX shell splits it, for the few forms the examples use:
/// blanks between words, single quotes around words with spaces.
#[cfg(test)]
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every leaf command: its path of names and its help's example lines.
    fn leaves(command: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        if command.has_subcommands() {
            // Hidden commands (the packaging's man-page writer) are not for operators.
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                let mut path = path.clone();
                path.push(sub.get_name().to_owned());
                leaves(sub, path, out);
            }
        } else {
            let help = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            out.push((path, help));
        }
    }

    #[test]
    fn every_command_has_an_example_that_parses_as_that_command() {
        let mut all = Vec::new();
        leaves(&crate::Cli::command(), Vec::new(), &mut all);
        assert!(all.len() >= 20, "{} commands", all.len());
        for (path, help) in all {
            let examples: Vec<&str> = help
                .lines()
                .filter_map(|l| l.strip_prefix("  dcmanager "))
                .collect();
            assert!(!examples.is_empty(), "{path:?} has no example");
            for example in examples {
                let mut argv = vec!["dcmanager".to_owned()];
                argv.extend(words(example));
                let matches = crate::Cli::command()
                    .try_get_matches_from(&argv)
                    .unwrap_or_else(|e| panic!("{example}: {e}"));
                let mut named = Vec::new();
                let mut at = &matches;
                while let Some((name, sub)) = at.subcommand() {
                    named.push(name.to_owned());
                    at = sub;
                }
                assert_eq!(named, path, "{example}");
            }
        }
    }

    #[test]
    fn top_level_examples_parse() {
        for example in DCMANAGER
            .lines()
            .filter_map(|l| l.strip_prefix("  dcmanager "))
        {
            let mut argv = vec!["dcmanager".to_owned()];
            argv.extend(words(example));
            assert!(
                crate::Cli::command().try_get_matches_from(&argv).is_ok(),
                "{example}"
            );
        }
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            words("a --subject 'C=CA CN=x'  b ''"),
            ["a", "--subject", "C=CA CN=x", "b", ""]
        );
    }
}
