//! `gatehouse`: run Gatehouse (`dev`, `serve`) and talk to it (everything else).

mod api_key;
mod client;
mod commands;
mod connectors;
mod credentials;
mod device_flow;
mod duration;
mod output;
#[cfg(test)]
mod testing;

use clap::{Parser, Subcommand};
use gatehouse::runtime;

use commands::{
    AuditCommand, DeviceCommand, Globals, LoginArgs, LogoutArgs, OutputFormat,
    ServiceAccountCommand, SigningKeyCommand, UserCommand,
};
use connectors::{
    ArtifactStoreCommand, ContainerRegistryCommand, LeaseCommand, OrchestratorCommand,
    ServiceConnectorCommand,
};

/// Gatehouse: the authentication plane for ML platforms.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about = None, propagate_version = true,
    after_long_help = "\
Environment:
  GATEHOUSE_URL          the gateway URL (same as --url)
  GATEHOUSE_API_KEY      a service account's API key: every command uses it, no login needed
                         (it takes precedence over a saved login; needs GATEHOUSE_URL or --url)
  GATEHOUSE_TOKEN_CACHE  off: keep the token of GATEHOUSE_API_KEY in memory only
  GATEHOUSE_CONFIG_DIR   where the saved session and token cache live
                         (default $XDG_CONFIG_HOME/gatehouse or ~/.config/gatehouse)
  GATEHOUSE_NATS_URL     the NATS server of `gatehouse audit tail`")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in one process, in memory (nothing persists). Prints the admin
    /// password once.
    Dev(runtime::ServerArgs),
    /// Run every service in one process against Postgres and NATS.
    Serve(runtime::ServeArgs),
    /// Log in and keep the session for later commands: in a browser (the default), with
    /// --username and a password, or with --api-key.
    Login {
        #[command(flatten)]
        args: LoginArgs,
        #[command(flatten)]
        globals: Globals,
    },
    /// Forget the saved session; after a device login, also revoke the device on the
    /// server (unless --keep-device).
    Logout {
        #[command(flatten)]
        args: LogoutArgs,
        #[command(flatten)]
        globals: Globals,
    },
    /// Show who you are logged in as.
    CurrentUser {
        #[command(flatten)]
        globals: Globals,
    },
    /// Manage users (admins).
    User {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage service accounts.
    #[command(name = "service-account")]
    ServiceAccount {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: ServiceAccountCommand,
    },
    /// Manage the devices you logged in on with `gatehouse login` in a browser, and
    /// approve a device's code from the terminal.
    #[command(
        name = "authorized-device",
        after_long_help = "\
Examples:
  gatehouse authorized-device list --status active
  gatehouse authorized-device describe 0190f0a8-3b1c-7000-8000-00000000d001
  gatehouse authorized-device lock 0190f0a8-3b1c-7000-8000-00000000d001
  gatehouse authorized-device delete 0190f0a8-3b1c-7000-8000-00000000d001 --yes
  gatehouse authorized-device approve WDJB-MJHT --trust

A device is what logged in with `gatehouse login` in a browser; its token works until it
expires, is locked (until unlocked) or deleted. IDs may be shortened to a unique prefix,
as the list shows them (--wide shows them whole)."
    )]
    AuthorizedDevice {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Rotate and retire the keys that sign access tokens (admins).
    #[command(
        name = "signing-key",
        after_long_help = "\
Examples:
  gatehouse signing-key list
  gatehouse signing-key add --activate-in 300     # verifies now, signs in 5 minutes
  gatehouse signing-key add --activate-in 0 && gatehouse signing-key retire OLD_KID   # a leaked key"
    )]
    SigningKey {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: SigningKeyCommand,
    },
    /// Follow the audit trail (the event feed, through the gateway or from NATS).
    Audit {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Service connectors: cloud credentials kept on the server, handed out short-lived
    /// for one resource.
    #[command(
        name = "service-connector",
        after_long_help = "\
Examples:
  gatehouse service-connector list-types
  gatehouse service-connector describe-type aws --auth-method iam-role
  gatehouse service-connector register aws-ml --type aws --auto-configure
  gatehouse service-connector credentials aws-ml --resource-type s3-bucket \\
      --resource-id s3://zenfiles --format env
  gatehouse service-connector login aws-ml --resource-type s3-bucket   # an AWS profile

Secrets are never taken from the command line: pass --secret NAME=@FILE or NAME=@-, or
answer the hidden prompt."
    )]
    ServiceConnector {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: ServiceConnectorCommand,
    },
    /// Credential leases: who got credentials from which connector, until when.
    Lease {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: LeaseCommand,
    },
    /// Artifact stores, linked to a service connector.
    #[command(name = "artifact-store")]
    ArtifactStore {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: ArtifactStoreCommand,
    },
    /// Container registries, linked to a service connector.
    #[command(name = "container-registry")]
    ContainerRegistry {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: ContainerRegistryCommand,
    },
    /// Orchestrators, linked to a service connector.
    Orchestrator {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: OrchestratorCommand,
    },
}

impl Command {
    /// The output format asked for (errors are printed in it too).
    fn output(&self) -> OutputFormat {
        match self {
            Command::Dev(_) | Command::Serve(_) => OutputFormat::Table,
            Command::Login { globals, .. }
            | Command::Logout { globals, .. }
            | Command::CurrentUser { globals }
            | Command::User { globals, .. }
            | Command::ServiceAccount { globals, .. }
            | Command::AuthorizedDevice { globals, .. }
            | Command::SigningKey { globals, .. } => globals.output,
            Command::Audit { globals, .. } => globals.output,
            Command::ServiceConnector { globals, .. }
            | Command::Lease { globals, .. }
            | Command::ArtifactStore { globals, .. }
            | Command::ContainerRegistry { globals, .. }
            | Command::Orchestrator { globals, .. } => globals.output,
        }
    }
}

fn init_logging(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = std::env::var("GATEHOUSE_LOG").unwrap_or_else(|_| default.to_owned());
    let format = std::env::var("GATEHOUSE_LOG_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or_default();
    gatehouse_telemetry::init(&filter, format);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => runtime::dev(args).await,
        Command::Serve(args) => runtime::serve(args).await,
        Command::Login { args, globals } => commands::login(args, &globals).await,
        Command::Logout { args, globals } => commands::logout(args, &globals).await,
        Command::CurrentUser { globals } => commands::current_user(&globals).await,
        Command::User { globals, command } => command.run(&globals).await,
        Command::ServiceAccount { globals, command } => command.run(&globals).await,
        Command::AuthorizedDevice { globals, command } => command.run(&globals).await,
        Command::SigningKey { globals, command } => command.run(&globals).await,
        Command::Audit { globals, command } => command.run(&globals).await,
        Command::ServiceConnector { globals, command } => command.run(&globals).await,
        Command::Lease { globals, command } => command.run(&globals).await,
        Command::ArtifactStore { globals, command } => command.run(&globals).await,
        Command::ContainerRegistry { globals, command } => command.run(&globals).await,
        Command::Orchestrator { globals, command } => command.run(&globals).await,
    }
}

/// Whether the command line asks for `-o json`, read before parsing so that a usage error
/// can be told in JSON too.
fn json_requested(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.iter()
        .zip(args.iter().skip(1).map(Some).chain([None]))
        .any(|(arg, next)| {
            matches!(arg.as_str(), "-ojson" | "-o=json" | "--output=json")
                || (matches!(arg.as_str(), "-o" | "--output") && next.is_some_and(|n| n == "json"))
        })
}

/// A usage error from the parser: its own text (exit 2), or with `-o json` the error
/// object on stderr. Help and version go to stdout as usual.
fn parse_failed(e: &clap::Error, args: &[std::ffi::OsString]) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) || !json_requested(args)
    {
        let _ = e.print();
        return std::process::ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let object = serde_json::json!({
        "error": "invalid_usage", "code": null, "message": message, "request_id": null,
    });
    eprintln!("{object}");
    std::process::ExitCode::from(2)
}

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Started as docker-credential-gatehouse (a link to this binary): Docker's helper.
    if connectors::helper::invoked_as_helper(args.first().map(|a| a.as_os_str())) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        return connectors::helper::main(args.get(1).and_then(|a| a.to_str()));
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return parse_failed(&e, &args),
    };
    let output = cli.command.output();
    init_logging(matches!(cli.command, Command::Dev(_) | Command::Serve(_)));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let (line, status) = commands::report_error(&e, output);
            eprintln!("{line}");
            std::process::ExitCode::from(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn long_help(path: &[&str]) -> String {
        let mut cmd = Cli::command();
        cmd.build();
        let mut current = &mut cmd;
        for name in path {
            current = current
                .find_subcommand_mut(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        current.render_long_help().to_string()
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_only_the_options_a_command_uses() {
        for server in [&["dev"][..], &["serve"]] {
            let help = long_help(server);
            assert!(
                !help.contains("--url") && !help.contains("--output"),
                "{help}"
            );
            assert!(help.contains("--bind"), "{help}");
        }
        // audit tail follows the gateway (--url) or, given --nats-url, NATS.
        let audit = long_help(&["audit", "tail"]);
        assert!(
            audit.contains("--url") && audit.contains("--output") && audit.contains("--nats-url"),
            "{audit}"
        );
        for client in [
            &["login"][..],
            &["current-user"],
            &["user", "list"],
            &["service-account", "api-key"],
            &["authorized-device", "lock"],
            &["signing-key", "retire"],
        ] {
            let help = long_help(client);
            assert!(
                help.contains("--url") && help.contains("--output"),
                "{client:?}: {help}"
            );
        }
        // Help carries what it needs, not a path into the repository.
        let devices = long_help(&["authorized-device"]);
        assert!(!devices.contains("docs/"), "{devices}");
    }

    #[test]
    fn every_connector_command_and_flag_has_help_and_the_client_options() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" {
                    assert!(arg.get_help().is_some(), "{path} {id} has no help");
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no help",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        for top in [
            "service-connector",
            "lease",
            "artifact-store",
            "container-registry",
            "orchestrator",
        ] {
            let sub = cmd.find_subcommand(top).unwrap_or_else(|| panic!("{top}"));
            check(sub, top);
        }
        for client in [
            &["service-connector", "register"][..],
            &["service-connector", "credentials"],
            &["lease", "list"],
            &["artifact-store", "connect"],
            &["orchestrator", "register"],
        ] {
            let help = long_help(client);
            assert!(
                help.contains("--url") && help.contains("--output"),
                "{client:?}: {help}"
            );
        }
    }

    #[test]
    fn connector_commands_parse_as_documented() {
        let parses = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("gatehouse").chain(args.iter().copied())).is_ok()
        };
        assert!(parses(&[
            "service-connector",
            "register",
            "aws-ml",
            "--type",
            "aws",
            "--auth-method",
            "iam-role",
            "--resource-type",
            "s3-bucket",
            "--resource-id",
            "s3://b",
            "--config",
            "region=us-east-1",
            "--label",
            "team=ml",
            "--expires-at",
            "2026-12-31T00:00:00Z",
            "--no-verify",
        ]));
        assert!(!parses(&[
            "service-connector",
            "register",
            "x",
            "--type",
            "aws",
            "--auto-configure",
            "-i",
        ]));
        assert!(!parses(&[
            "service-connector",
            "register",
            "x",
            "--type",
            "aws",
            "--expires-at",
            "soon",
        ]));
        assert!(!parses(&[
            "service-connector",
            "register",
            "x",
            "--type",
            "aws",
            "--config",
            "novalue"
        ]));
        assert!(parses(&[
            "service-connector",
            "update",
            "aws-ml",
            "--config",
            "endpoint_url=",
            "--remove-label",
            "team",
            "--verify",
        ]));
        assert!(parses(&[
            "service-connector",
            "credentials",
            "aws-ml",
            "--resource-type",
            "s3-bucket",
            "--format",
            "aws-process",
        ]));
        assert!(!parses(&[
            "service-connector",
            "credentials",
            "aws-ml",
            "--resource-type",
            "s3-bucket",
            "--format",
            "yaml",
        ]));
        assert!(!parses(&["service-connector", "credentials", "aws-ml"]));
        assert!(parses(&[
            "service-connector",
            "grant",
            "aws-ml",
            "--to",
            "ci-bot",
            "--resource-id",
            "a",
            "--resource-id",
            "b"
        ]));
        assert!(parses(&[
            "service-connector",
            "revoke-grant",
            "aws-ml",
            "--from",
            "ci-bot"
        ]));
        assert!(parses(&[
            "lease",
            "list",
            "--connector",
            "aws-ml",
            "--active",
            "-o",
            "json"
        ]));
        assert!(parses(&[
            "artifact-store",
            "register",
            "z",
            "--flavor",
            "s3",
            "--path",
            "s3://z"
        ]));
        // --path belongs to artifact stores, --uri to registries.
        assert!(!parses(&[
            "orchestrator",
            "register",
            "k",
            "--flavor",
            "kubernetes",
            "--path",
            "x"
        ]));
        assert!(parses(&[
            "container-registry",
            "register",
            "r",
            "--flavor",
            "aws",
            "--uri",
            "1.dkr.ecr.x.amazonaws.com"
        ]));
        assert!(!parses(&[
            "artifact-store",
            "register",
            "z",
            "--flavor",
            "s3",
            "--resource-id",
            "s3://z"
        ]));
        assert!(!parses(&[
            "artifact-store",
            "connect",
            "z",
            "--connector",
            "c",
            "--resource-id",
            "a",
            "-i"
        ]));
        assert!(!parses(&["artifact-store", "update", "z"]));
        assert!(parses(&[
            "orchestrator",
            "credentials",
            "k",
            "--format",
            "kube-exec"
        ]));
    }

    #[test]
    fn options_work_before_and_after_the_subcommand() {
        for args in [
            &["gatehouse", "user", "-o", "json", "list"][..],
            &["gatehouse", "user", "list", "-o", "json"],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(cli.command.output(), OutputFormat::Json, "{args:?}");
        }
        assert!(Cli::try_parse_from(["gatehouse", "dev", "-o", "json"]).is_err());
    }
}
