//! The CLI of service connectors (issue 12): `service-connector`, `lease`,
//! `artifact-store`, `container-registry`, `orchestrator`, and the CLI as
//! `docker-credential-gatehouse`.
//!
//! - [`client`]: the REST calls and answers, on [`crate::client::GatehouseClient`].
//! - [`formats`]: credentials for tools (`env`, `aws-process`, `kube-exec`,
//!   `docker-helper`).
//! - [`integrations`]: what `login` writes into the AWS config, Docker config, kubeconfig.
//! - [`autoconfig`]: `register --auto-configure` from the local AWS configuration.
//! - [`input`]: `KEY=VALUE` options, secrets from files, stdin or hidden prompts.
//! - [`helper`]: the Docker credential helper protocol.
//!
//! Secret values never reach a table, a log line, `Debug` output or an error message:
//! they travel in [`client::SecretFields`] and [`client::CredentialFields`], and only the
//! request body, `-o json` and `--format` output show them.

pub mod autoconfig;
pub mod client;
pub mod components;
pub mod formats;
pub mod helper;
pub mod input;
pub mod integrations;
pub mod leases;
pub mod service_connector;

pub use components::{ArtifactStoreCommand, ContainerRegistryCommand, OrchestratorCommand};
pub use leases::LeaseCommand;
pub use service_connector::ServiceConnectorCommand;

use crate::client::Page;
use crate::commands::{Context, OutputFormat};
use crate::output;

/// Paging hints, on stderr so that stdout stays a plain table.
fn page_footer<T>(page: &Page<T>, what: &str) {
    if page.items.is_empty() && page.index <= 1 {
        eprintln!("No {what} found.");
    } else if page.total_pages > 1 {
        let more = if page.index < page.total_pages {
            format!(": --page {} for more", page.index + 1)
        } else {
            String::new()
        };
        eprintln!(
            "Page {} of {} ({} {what} in all){more}",
            page.index, page.total_pages, page.total
        );
    }
}

/// A resource list's cell: its ids, `(no instances)`, or its error.
fn resources_cell(r: &client::ResourceList) -> String {
    if let Some(error) = &r.error {
        return format!("error: {error}");
    }
    match r.resource_ids.as_deref() {
        Some([]) | None => "(no instances)".to_owned(),
        Some(ids) => ids.join(", "),
    }
}

/// Prints issued credentials: `-o json` the API's answer, `--format` for a tool, else a
/// table of field names (never values) and a hint on stderr.
fn print_credentials(
    ctx: &Context,
    connector: &str,
    issued: &client::IssuedCredentials,
    format: Option<formats::CredentialFormat>,
) -> anyhow::Result<()> {
    if let Some(format) = format {
        return output::emit(&formats::render(format, issued)?);
    }
    match ctx.output() {
        OutputFormat::Json => output::emit_json(issued),
        OutputFormat::Table => {
            output::emit(&formats::table(connector, issued))?;
            eprintln!("{}", formats::table_hint(issued));
            Ok(())
        }
    }
}
