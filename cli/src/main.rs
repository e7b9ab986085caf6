//! `dcmanager`: the operator's command line for the dc-rootca controller, with the commands,
//! columns and formats of StarlingX's `dcmanager` for the kube-rootca-update strategy, subclouds
//! and subcloud groups, plus `--watch` to follow a strategy live.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool talks to its user"
)]

mod client;
mod controllers;
mod events;
mod examples;
mod follow;
mod format;
mod generated;
mod keystone;
mod request;
mod summary;
mod views;
mod watch;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use client::Client;
use format::{ListFormat, Listing, OneFormat, Record};

#[derive(Parser)]
#[command(
    name = "dcmanager",
    version,
    about = "Distributed cloud manager: Kubernetes root CA update orchestration",
    after_help = examples::DCMANAGER,
    next_help_heading = "Connection options"
)]
struct Cli {
    /// Base URL of the dcmanager REST API, or several controllers' URLs separated by commas (each
    /// request goes to the first that connects, and a standby's 503 is followed to the leader it
    /// names) [default: the Keystone catalog's dcmanager endpoint after an OS_AUTH_URL login, else
    /// http://127.0.0.1:8119/v1.0].
    #[arg(long, env = "DCMANAGER_URL", global = true)]
    dcmanager_url: Option<String>,
    /// Token sent as X-Auth-Token.
    #[arg(long, env = "OS_AUTH_TOKEN", hide_env_values = true, global = true)]
    os_auth_token: Option<String>,
    /// CA certificate bundle (PEM) to verify an HTTPS API (and Keystone) with.
    #[arg(long, env = "OS_CACERT", global = true)]
    os_cacert: Option<PathBuf>,
    #[command(flatten)]
    openrc: keystone::Openrc,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, apply, abort, show and delete the Kubernetes root CA update strategy.
    #[command(name = "kube-rootca-update-strategy", subcommand)]
    Strategy(StrategyCommand),
    /// The strategy's per-subcloud steps.
    #[command(name = "strategy-step", subcommand)]
    Step(StepCommand),
    /// List, show, add, update, manage, unmanage and delete subclouds.
    #[command(subcommand)]
    Subcloud(SubcloudCommand),
    /// Add, list, show, update and delete subcloud groups, and list their subclouds.
    #[command(name = "subcloud-group", subcommand)]
    Group(GroupCommand),
    /// Print the shell completion script for bash, zsh or fish.
    #[command(after_help = examples::COMPLETION)]
    Completion(generated::CompletionArgs),
    /// Write the man pages (what the package installs).
    #[command(hide = true)]
    Man(generated::ManArgs),
    /// The options subclouds update with (sw-update-options): the defaults, or per subcloud.
    #[command(name = "strategy-config", subcommand)]
    Options(OptionsCommand),
}

#[derive(Subcommand)]
enum OptionsCommand {
    /// Update strategy options, defaults or per subcloud; options not given keep their value.
    #[command(after_help = examples::OPTIONS_UPDATE)]
    Update {
        #[command(flatten)]
        fields: request::OptionsFields,
        /// Subcloud name or id, omit to set default options.
        subcloud: Option<String>,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Show strategy options, defaults or per subcloud.
    #[command(after_help = examples::OPTIONS_SHOW)]
    Show {
        /// Subcloud name or id, omit to show default options.
        subcloud: Option<String>,
        #[command(flatten)]
        out: OneOutput,
    },
    /// List strategy options: the defaults, then each subcloud's own.
    #[command(after_help = examples::OPTIONS_LIST)]
    List {
        #[command(flatten)]
        out: ListOutput,
    },
    /// Delete per subcloud strategy options: the subcloud then uses the defaults.
    #[command(after_help = examples::OPTIONS_DELETE)]
    Delete {
        /// Subcloud name or id.
        subcloud: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Subcommand)]
enum StrategyCommand {
    /// Create a Kubernetes Root CA update strategy.
    #[command(after_help = examples::STRATEGY_CREATE)]
    Create {
        #[command(flatten)]
        options: request::CreateStrategy,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Apply the strategy.
    #[command(after_help = examples::STRATEGY_APPLY)]
    Apply {
        #[command(flatten)]
        confirm: Confirm,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Abort the strategy; subclouds already updating finish their update.
    #[command(after_help = examples::STRATEGY_ABORT)]
    Abort {
        #[command(flatten)]
        out: OneOutput,
    },
    /// Show the strategy.
    #[command(after_help = examples::STRATEGY_SHOW)]
    Show {
        #[command(flatten)]
        watch: WatchArgs,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Delete the strategy.
    #[command(after_help = examples::STRATEGY_DELETE)]
    Delete {
        #[command(flatten)]
        confirm: Confirm,
        #[command(flatten)]
        out: OneOutput,
    },
}

#[derive(Subcommand)]
enum StepCommand {
    /// List the strategy steps.
    #[command(after_help = examples::STEP_LIST)]
    List {
        #[command(flatten)]
        watch: WatchArgs,
        #[command(flatten)]
        out: ListOutput,
    },
    /// Show the step of one subcloud.
    #[command(after_help = examples::STEP_SHOW)]
    Show {
        /// Subcloud name.
        cloud_name: String,
        #[command(flatten)]
        out: OneOutput,
    },
}

#[derive(Subcommand)]
enum SubcloudCommand {
    /// List subclouds with their aggregated sync status.
    #[command(after_help = examples::SUBCLOUD_LIST)]
    List {
        #[command(flatten)]
        out: ListOutput,
    },
    /// Show a subcloud, with its kube-rootca sync status and root CA.
    #[command(after_help = examples::SUBCLOUD_SHOW)]
    Show {
        /// Name or ID of the subcloud.
        subcloud: String,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Print why the subcloud's last update failed (its error-description), as the original CLI does.
    #[command(after_help = examples::SUBCLOUD_ERRORS)]
    Errors {
        /// Name or ID of the subcloud.
        subcloud: String,
    },
    /// Register a subcloud.
    #[command(after_help = examples::SUBCLOUD_ADD)]
    Add {
        #[command(flatten)]
        options: request::AddSubcloud,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Change a subcloud's description, location or group.
    #[command(after_help = examples::SUBCLOUD_UPDATE)]
    Update {
        /// Name or ID of the subcloud.
        subcloud: String,
        #[command(flatten)]
        options: request::UpdateSubcloud,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Manage a subcloud: include it in strategies.
    #[command(after_help = examples::SUBCLOUD_MANAGE)]
    Manage {
        /// Name or ID of the subcloud.
        subcloud: String,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Unmanage a subcloud: leave it out of strategies.
    #[command(after_help = examples::SUBCLOUD_UNMANAGE)]
    Unmanage {
        /// Name or ID of the subcloud.
        subcloud: String,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Delete a subcloud.
    #[command(after_help = examples::SUBCLOUD_DELETE)]
    Delete {
        /// Name or ID of the subcloud.
        subcloud: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Add a subcloud group.
    #[command(mut_arg("name", |a| a.required(true)), after_help = examples::GROUP_ADD)]
    Add {
        #[command(flatten)]
        fields: request::GroupFields,
        #[command(flatten)]
        out: OneOutput,
    },
    /// List subcloud groups.
    #[command(after_help = examples::GROUP_LIST)]
    List {
        #[command(flatten)]
        out: ListOutput,
    },
    /// Show a subcloud group.
    #[command(after_help = examples::GROUP_SHOW)]
    Show {
        /// Name or ID of the group.
        group: String,
        #[command(flatten)]
        out: OneOutput,
    },
    /// Update a subcloud group.
    #[command(after_help = examples::GROUP_UPDATE)]
    Update {
        /// Name or ID of the group.
        group: String,
        #[command(flatten)]
        fields: request::GroupFields,
        #[command(flatten)]
        out: OneOutput,
    },
    /// List the subclouds of a subcloud group.
    #[command(after_help = examples::GROUP_LIST_SUBCLOUDS)]
    ListSubclouds {
        /// Name or ID of the group.
        group: String,
        #[command(flatten)]
        out: ListOutput,
    },
    /// Delete a subcloud group (it must have no members).
    #[command(after_help = examples::GROUP_DELETE)]
    Delete {
        /// Name or ID of the group.
        group: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Args)]
struct OneOutput {
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value_t = OneFormat::Table)]
    format: OneFormat,
    /// Column to include (repeatable); all by default.
    #[arg(short = 'c', long = "column")]
    columns: Vec<String>,
}

#[derive(Args)]
struct ListOutput {
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Column to include (repeatable); all by default.
    #[arg(short = 'c', long = "column")]
    columns: Vec<String>,
}

#[derive(Args)]
struct Confirm {
    /// Do not ask for confirmation (asked only when CLI_CONFIRMATIONS=enabled).
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct WatchArgs {
    /// Follow the strategy until it completes, fails or is aborted; exit 0, 2 or 3 accordingly.
    /// Rides out a controller restart (reconnects with backoff); a large fleet is summed up.
    #[arg(long)]
    watch: bool,
    /// Seconds between redraws when watching (between polls against a controller without the event
    /// stream).
    #[arg(long, default_value = "1", value_parser = parse_interval, requires = "watch")]
    interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{e}"))
}

fn strategy_path() -> String {
    format!("/sw-update-strategy?type={}", request::STRATEGY_TYPE)
}

fn actions_path() -> String {
    format!(
        "/sw-update-strategy/actions?type={}",
        request::STRATEGY_TYPE
    )
}
const STEPS_PATH: &str = "/sw-update-strategy/steps";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = actix_rt::System::new().block_on(run(cli));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ERROR: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // What needs no controller is answered before any login: a build host with an openrc sourced
    // generates completions and man pages without reaching Keystone.
    match &cli.command {
        Command::Completion(args) => {
            generated::completion(
                args,
                <Cli as clap::CommandFactory>::command(),
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man(args) => {
            generated::man_pages(args, <Cli as clap::CommandFactory>::command())?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let cacert = cli.os_cacert.as_deref();
    let (url, token) =
        keystone::connection(cli.dcmanager_url, cli.os_auth_token, cacert, &cli.openrc).await?;
    let client = Client::new(&url, token, cacert)?;
    match cli.command {
        Command::Strategy(command) => strategy(&client, command).await,
        Command::Step(StepCommand::List { watch, out }) => {
            if watch.watch {
                return follow_strategy(&client, watch.interval, follow::View::Steps(&out.columns))
                    .await;
            }
            let steps = client.get(STEPS_PATH).await?;
            print_list(
                &views::listing(steps.get("strategy-steps"), views::STEP_LIST),
                &out,
            )
        }
        Command::Step(StepCommand::Show { cloud_name, out }) => {
            let step = client
                .get(&format!("{STEPS_PATH}/{}", segment(&cloud_name)))
                .await?;
            print_one(&views::step(&step), &out)
        }
        Command::Subcloud(command) => subcloud(&client, command).await,
        Command::Group(command) => group(&client, command).await,
        Command::Options(command) => options(&client, command).await,
        Command::Completion(_) | Command::Man(_) => Ok(ExitCode::SUCCESS),
    }
}

/// The original's region name for the default options.
const DEFAULT_REGION_NAME: &str = "SystemController";

async fn options(client: &Client, command: OptionsCommand) -> anyhow::Result<ExitCode> {
    let path = |subcloud: Option<&str>| {
        format!(
            "/sw-update-options/{}",
            segment(subcloud.unwrap_or(DEFAULT_REGION_NAME))
        )
    };
    let (answer, out) = match command {
        OptionsCommand::Update {
            fields,
            subcloud,
            out,
        } => (
            client
                .post(&path(subcloud.as_deref()), &fields.body()?)
                .await?,
            out,
        ),
        OptionsCommand::Show { subcloud, out } => {
            (client.get(&path(subcloud.as_deref())).await?, out)
        }
        OptionsCommand::List { out } => {
            let answer = client.get("/sw-update-options").await?;
            return print_list(
                &views::listing(answer.get("sw-update-options"), views::OPTIONS_LIST),
                &out,
            );
        }
        OptionsCommand::Delete { subcloud, confirm } => {
            if !confirmed(&confirm)? {
                return Ok(ExitCode::FAILURE);
            }
            client.delete(&path(Some(&subcloud))).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_one(&views::record(&answer, views::OPTIONS), &out)
}

async fn strategy(client: &Client, command: StrategyCommand) -> anyhow::Result<ExitCode> {
    let (answer, out) = match command {
        StrategyCommand::Create { options, out } => {
            options.validate()?;
            let cert = match &options.cert_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read --cert-file {}", path.display()))?,
                ),
                None => None,
            };
            (
                client
                    .post("/sw-update-strategy", &options.body(cert)?)
                    .await?,
                out,
            )
        }
        StrategyCommand::Apply { confirm, out } => {
            if !confirmed(&confirm)? {
                return Ok(ExitCode::FAILURE);
            }
            (
                client
                    .post(&actions_path(), &request::action("apply"))
                    .await?,
                out,
            )
        }
        StrategyCommand::Abort { out } => (
            client
                .post(&actions_path(), &request::action("abort"))
                .await?,
            out,
        ),
        StrategyCommand::Show { watch, out } => {
            if watch.watch {
                return follow_strategy(
                    client,
                    watch.interval,
                    follow::View::Strategy(&out.columns),
                )
                .await;
            }
            (client.get(&strategy_path()).await?, out)
        }
        StrategyCommand::Delete { confirm, out } => {
            if !confirmed(&confirm)? {
                return Ok(ExitCode::FAILURE);
            }
            (client.delete(&strategy_path()).await?, out)
        }
    };
    print_one(&views::record(&answer, views::STRATEGY), &out)
}

async fn subcloud(client: &Client, command: SubcloudCommand) -> anyhow::Result<ExitCode> {
    let path = |name: &str| format!("/subclouds/{}", segment(name));
    let (answer, out) = match command {
        SubcloudCommand::List { out } => {
            let answer = client.get("/subclouds").await?;
            return print_list(
                &views::listing(answer.get("subclouds"), views::SUBCLOUD_LIST),
                &out,
            );
        }
        SubcloudCommand::Show { subcloud, out } => (client.get(&path(&subcloud)).await?, out),
        SubcloudCommand::Errors { subcloud } => {
            let answer = client.get(&path(&subcloud)).await?;
            let error = answer.get("error-description").map(format::text);
            println!("{}", error.unwrap_or_else(|| "None".to_owned()));
            return Ok(ExitCode::SUCCESS);
        }
        SubcloudCommand::Add { options, out } => {
            (client.post("/subclouds", &options.body()).await?, out)
        }
        SubcloudCommand::Update {
            subcloud,
            options,
            out,
        } => (client.patch(&path(&subcloud), &options.body()?).await?, out),
        SubcloudCommand::Manage { subcloud, out } => (
            client
                .patch(&path(&subcloud), &request::management(true))
                .await?,
            out,
        ),
        SubcloudCommand::Unmanage { subcloud, out } => (
            client
                .patch(&path(&subcloud), &request::management(false))
                .await?,
            out,
        ),
        SubcloudCommand::Delete { subcloud, confirm } => {
            if !confirmed(&confirm)? {
                return Ok(ExitCode::FAILURE);
            }
            client.delete(&path(&subcloud)).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_one(&views::subcloud(&answer), &out)
}

async fn group(client: &Client, command: GroupCommand) -> anyhow::Result<ExitCode> {
    let path = |name: &str| format!("/subcloud-groups/{}", segment(name));
    let (answer, out) = match command {
        GroupCommand::List { out } => {
            let answer = client.get("/subcloud-groups").await?;
            return print_list(
                &views::listing(answer.get("subcloud_groups"), views::GROUP),
                &out,
            );
        }
        GroupCommand::Add { fields, out } => {
            (client.post("/subcloud-groups", &fields.body()?).await?, out)
        }
        GroupCommand::Show { group, out } => (client.get(&path(&group)).await?, out),
        GroupCommand::Update { group, fields, out } => {
            (client.patch(&path(&group), &fields.body()?).await?, out)
        }
        GroupCommand::ListSubclouds { group, out } => {
            let answer = client.get(&format!("{}/subclouds", path(&group))).await?;
            return print_list(&views::subcloud_details(answer.get("subclouds")), &out);
        }
        GroupCommand::Delete { group, confirm } => {
            if !confirmed(&confirm)? {
                return Ok(ExitCode::FAILURE);
            }
            client.delete(&path(&group)).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_one(&views::record(&answer, views::GROUP), &out)
}

fn print_one(record: &Record, out: &OneOutput) -> anyhow::Result<ExitCode> {
    print!("{}", format::render_one(record, out.format, &out.columns)?);
    Ok(ExitCode::SUCCESS)
}

fn print_list(listing: &Listing, out: &ListOutput) -> anyhow::Result<ExitCode> {
    print!(
        "{}",
        format::render_list(listing, out.format, &out.columns)?
    );
    Ok(ExitCode::SUCCESS)
}

/// As the original: a high-risk command asks first only when `CLI_CONFIRMATIONS=enabled`.
fn confirmed(confirm: &Confirm) -> anyhow::Result<bool> {
    if confirm.yes || std::env::var("CLI_CONFIRMATIONS").as_deref() != Ok("enabled") {
        return Ok(true);
    }
    eprint!(
        "WARNING: This is a high-risk operation that may affect the system. Are you sure you want to continue? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = is_yes(&answer);
    if !yes {
        eprintln!("Operation cancelled by the user");
    }
    Ok(yes)
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// One path segment, percent-encoded so that any subcloud or group name stays one segment.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `--watch`: follows the strategy to its end (see [`follow::follow`]); the exit code says how it ended.
async fn follow_strategy(
    client: &Client,
    interval: Duration,
    view: follow::View<'_>,
) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(
        follow::follow(client, interval, view).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_options_have_their_heading_and_show_their_environment() {
        let command = Cli::command();
        let global: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .collect();
        assert!(global.len() >= 3);
        for arg in global {
            assert_eq!(
                arg.get_help_heading(),
                Some("Connection options"),
                "{}",
                arg.get_id()
            );
            assert!(arg.get_env().is_some(), "{} has no env var", arg.get_id());
        }
        let token = command
            .get_arguments()
            .find(|a| a.get_id() == "os_auth_token")
            .unwrap();
        assert!(token.is_hide_env_values_set());
    }

    #[test]
    fn group_flags_accept_underscores_and_dashes() {
        for flag in ["--max_parallel_subclouds", "--max-parallel-subclouds"] {
            let cli = Cli::try_parse_from([
                "dcmanager",
                "subcloud-group",
                "add",
                "--name",
                "g",
                flag,
                "3",
            ])
            .unwrap();
            let Command::Group(GroupCommand::Add { fields, .. }) = cli.command else {
                panic!("not group add")
            };
            assert_eq!(fields.max_parallel_subclouds, Some(3));
        }
        assert!(
            Cli::try_parse_from(["dcmanager", "subcloud-group", "add", "--description", "d"])
                .is_err()
        );
    }

    #[test]
    fn rollback_goes_with_scope_flags_but_not_with_new_ca_parameters() {
        let create = |extra: &[&str]| {
            let args = [
                "dcmanager",
                "kube-rootca-update-strategy",
                "create",
                "--rollback",
            ];
            Cli::try_parse_from(args.iter().chain(extra))
        };
        assert!(create(&["--max-parallel-subclouds", "5", "subcloud1"]).is_ok());
        for bad in [
            &["--subject", "CN=x"][..],
            &["--expiry-date", "2030-01-01"],
            &["--cert-file", "ca.pem"],
            &["--force"],
        ] {
            assert!(create(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_differ_between_show_and_list() {
        assert!(
            Cli::try_parse_from([
                "dcmanager",
                "kube-rootca-update-strategy",
                "show",
                "-f",
                "shell"
            ])
            .is_ok()
        );
        assert!(
            Cli::try_parse_from([
                "dcmanager",
                "kube-rootca-update-strategy",
                "show",
                "-f",
                "csv"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["dcmanager", "strategy-step", "list", "-f", "csv"]).is_ok());
        assert!(
            Cli::try_parse_from(["dcmanager", "strategy-step", "list", "-f", "shell"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["dcmanager", "strategy-step", "list", "--interval", "2"]).is_err()
        );
    }

    #[test]
    fn helpers() {
        assert!(is_yes("Y\n") && is_yes(" yes ") && !is_yes("") && !is_yes("no"));
        assert_eq!(segment("sub cloud/1"), "sub%20cloud%2F1");
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("-1").is_err());
    }
}
