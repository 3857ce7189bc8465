//! `gatehouse lease ...`: who got credentials from which connector, until when; and
//! revoking them where the cloud allows it.

use super::client::{Lease, LeaseFilters};
use super::page_footer;
use crate::client::GatehouseClient;
use crate::commands::{Context, Globals};
use crate::output::{self, Col, OutputFormat, Table, View};

/// Inspect and revoke credential leases.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LeaseCommand {
    /// List leases (yours; admins and connector owners: theirs too).
    List(ListArgs),
    /// Show one lease.
    Describe(IdArg),
    /// Revoke a lease's credentials at the cloud, where they can be (an AWS STS session
    /// cannot: it only expires, and the server says so).
    Revoke(IdArg),
}

/// A lease, by id.
#[derive(Debug, Clone, clap::Args)]
pub struct IdArg {
    /// The lease id, or a unique prefix of it (as `lease list` shows them).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `lease list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only leases of this connector (name or id).
    #[arg(long, value_name = "NAME")]
    pub connector: Option<String>,
    /// Only leases issued to this principal (name or id).
    #[arg(long, value_name = "NAME")]
    pub principal: Option<String>,
    /// Only leases that are still active.
    #[arg(long)]
    pub active: bool,
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Leases per page [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

impl LeaseCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        let client = ctx.client().await?;
        match self {
            LeaseCommand::List(args) => {
                let filters = LeaseFilters {
                    connector: args.connector,
                    principal: args.principal,
                    active: args.active,
                    page: args.page,
                    size: args.size,
                };
                let page = client.list_leases(&filters).await?;
                match ctx.output() {
                    OutputFormat::Json => output::emit_json(&page),
                    OutputFormat::Table => {
                        output::emit(&lease_table(&page.items, args.wide.view()).render())?;
                        page_footer(&page, "leases");
                        Ok(())
                    }
                }
            }
            LeaseCommand::Describe(args) => {
                let id = resolve(&client, &args.id).await?;
                let lease = client.get_lease(&id).await?;
                print_lease(&ctx, &lease)
            }
            LeaseCommand::Revoke(args) => {
                let id = resolve(&client, &args.id).await?;
                let lease = client.revoke_lease(&id).await?;
                if ctx.output() == OutputFormat::Table {
                    output::emit(&format!("Revoked lease {}\n", lease.id))?;
                }
                print_lease(&ctx, &lease)
            }
        }
    }
}

/// A lease id as typed: whole, or a unique prefix (as the list shows them), resolved
/// among the leases the caller may see.
async fn resolve(client: &GatehouseClient, typed: &str) -> anyhow::Result<String> {
    let typed = typed.trim().to_ascii_lowercase();
    if typed.len() >= 36 || typed.len() < 4 {
        return Ok(typed);
    }
    let mut matches = Vec::new();
    let mut filters = LeaseFilters {
        page: Some(1),
        size: Some(1000),
        ..LeaseFilters::default()
    };
    loop {
        let page = client.list_leases(&filters).await?;
        matches.extend(
            page.items
                .into_iter()
                .map(|l| l.id)
                .filter(|id| id.starts_with(&typed)),
        );
        let index = filters.page.unwrap_or(1);
        if index >= page.total_pages {
            break;
        }
        filters.page = Some(index + 1);
    }
    match matches.as_slice() {
        [id] => Ok(id.clone()),
        [] => anyhow::bail!(
            "no lease id starts with {typed} (among those you may see): `gatehouse lease list` \
             shows them"
        ),
        many => anyhow::bail!(
            "the prefix {typed} is ambiguous: it starts {} lease ids; type more of the id",
            many.len()
        ),
    }
}

fn print_lease(ctx: &Context, lease: &Lease) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(lease),
        OutputFormat::Table => output::emit(&describe_lease(lease)),
    }
}

fn resource(lease: &Lease) -> String {
    let kind = lease.resource_type.clone().unwrap_or_default();
    match &lease.resource_id {
        Some(id) => format!("{kind} {id}"),
        None => kind,
    }
}

fn or_id(name: &Option<String>, id: &Option<String>) -> String {
    name.clone().or_else(|| id.clone()).unwrap_or_default()
}

/// The list table of leases.
pub(super) fn lease_table(leases: &[Lease], view: View) -> Table {
    let mut table = Table::list(
        &[
            ("id", Col::Always),
            ("connector", Col::Always),
            ("status", Col::Always),
            (&output::utc("expires"), Col::Always),
            ("resource", Col::Flex),
            ("principal", Col::Wide),
            ("revocable", Col::Wide),
            (&output::utc("issued"), Col::Wide),
        ],
        view,
    );
    for l in leases {
        let id = if view == View::Wide {
            l.id.clone()
        } else {
            l.id.chars().take(8).collect()
        };
        table.push([
            id,
            or_id(&l.connector_name, &l.connector_id),
            l.status.clone(),
            output::optional_time(l.expires_at.as_deref(), "never"),
            resource(l),
            or_id(&l.principal_name, &l.principal),
            output::boolean(l.revocable),
            output::optional_time(l.issued_at.as_deref(), ""),
        ]);
    }
    table
}

fn describe_lease(l: &Lease) -> String {
    let mut rows = vec![
        ("id".to_owned(), l.id.clone()),
        ("status".to_owned(), l.status.clone()),
        (
            "connector".to_owned(),
            or_id(&l.connector_name, &l.connector_id),
        ),
        (
            "connector type".to_owned(),
            l.connector_type.clone().unwrap_or_default(),
        ),
        (
            "auth method".to_owned(),
            l.auth_method.clone().unwrap_or_default(),
        ),
        (
            "principal".to_owned(),
            or_id(&l.principal_name, &l.principal),
        ),
        ("resource".to_owned(), resource(l)),
        (
            "component".to_owned(),
            l.component_id.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "issued".to_owned(),
            output::optional_time_utc(l.issued_at.as_deref(), ""),
        ),
        (
            "expires".to_owned(),
            output::optional_time_utc(l.expires_at.as_deref(), "never"),
        ),
        (
            "revocable".to_owned(),
            if l.revocable {
                "yes".to_owned()
            } else {
                "no: it can only expire".to_owned()
            },
        ),
        (
            "revoked".to_owned(),
            output::optional_time_utc(l.revoked_at.as_deref(), "no"),
        ),
    ];
    rows.extend(output::extra_fields(&l.extra));
    output::describe(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(revocable: bool) -> Lease {
        serde_json::from_value(serde_json::json!({
            "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "connector_id": "c1",
            "connector_name": "aws-ml-production", "connector_type": "aws", "auth_method": "iam-role",
            "principal": "p1", "principal_name": "nightly-training-pipeline",
            "resource_type": "s3-bucket", "resource_id": "s3://recommendation-models-artifacts",
            "component_id": null, "issued_at": "2026-12-03T11:00:00Z",
            "expires_at": "2026-12-03T12:00:00Z", "revocable": revocable, "status": "active",
            "revoked_at": null}))
        .expect("lease")
    }

    #[test]
    fn the_lease_list_fits_80_columns_and_wide_shows_whole_ids() {
        let leases = [lease(false), lease(true)];
        let text = lease_table(&leases, View::Default).render();
        assert!(
            text.lines().all(|l| l.chars().count() <= output::WIDTH),
            "{text}"
        );
        assert!(
            text.contains("0193a1b2 ") && !text.contains("0193a1b2-c3d4"),
            "{text}"
        );
        let wide = lease_table(&leases, View::Wide).render();
        assert!(
            wide.contains("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            "{wide}"
        );
        assert!(wide.contains("nightly-training-pipeline"), "{wide}");
    }

    #[test]
    fn describe_says_when_a_lease_can_only_expire() {
        let text = describe_lease(&lease(false));
        assert!(text.contains("no: it can only expire"), "{text}");
        assert!(text.contains("2026-12-03 12:00:00 UTC"), "{text}");
    }
}
