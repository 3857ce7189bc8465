//! `gatehouse artifact-store | container-registry | orchestrator ...`: stack components,
//! each linked to a connector and one resource, so that pipelines ask for "credentials for
//! my artifact store" and never hold a long-lived secret. The three commands share every
//! verb but `register`, whose sugar differs (`--path`, `--uri`).

use gatehouse_contracts::connectors::{ComponentType, flavor_requirement, flavors};
use serde_json::{Map, Value};

use super::client::{Component, NewComponent};
use super::formats::CredentialFormat;
use super::service_connector::check_format;
use super::{input, page_footer, print_credentials};
use crate::commands::{Context, Globals, IdempotencyArg, UsageError, prompt, settle};
use crate::output::{self, Col, OutputFormat, Table, View};

/// `artifact-store ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ArtifactStoreCommand {
    /// Register an artifact store (flavor s3: --path s3://BUCKET).
    Register(ArtifactStoreRegister),
    #[command(flatten)]
    Verb(ComponentVerb),
}

/// `container-registry ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ContainerRegistryCommand {
    /// Register a container registry (flavor aws: --uri ACCOUNT.dkr.ecr.REGION.amazonaws.com).
    Register(ContainerRegistryRegister),
    #[command(flatten)]
    Verb(ComponentVerb),
}

/// `orchestrator ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum OrchestratorCommand {
    /// Register an orchestrator (flavor kubernetes).
    Register(RegisterArgs),
    #[command(flatten)]
    Verb(ComponentVerb),
}

impl ArtifactStoreCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        let kind = ComponentType::ArtifactStore;
        match self {
            Self::Register(args) => args.common.run(&ctx, kind, "path", args.path).await,
            Self::Verb(verb) => verb.run(&ctx, kind).await,
        }
    }
}

impl ContainerRegistryCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        let kind = ComponentType::ContainerRegistry;
        match self {
            Self::Register(args) => args.common.run(&ctx, kind, "uri", args.uri).await,
            Self::Verb(verb) => verb.run(&ctx, kind).await,
        }
    }
}

impl OrchestratorCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        let kind = ComponentType::Orchestrator;
        match self {
            Self::Register(args) => args.run(&ctx, kind, "", None).await,
            Self::Verb(verb) => verb.run(&ctx, kind).await,
        }
    }
}

/// What `register` takes for every component type.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// Name, unique among components of this type.
    pub name: String,
    /// The flavor (`s3`, `aws`, `kubernetes`).
    #[arg(long)]
    pub flavor: String,
    /// A configuration field (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = input::key_value)]
    pub config: Vec<(String, String)>,
    /// Link it to this connector (name or id).
    #[arg(long, value_name = "CONNECTOR")]
    pub connector: Option<String>,
    /// The connector's resource to use [default: the one its configuration names].
    #[arg(long, value_name = "ID", requires = "connector")]
    pub resource_id: Option<String>,
    #[command(flatten)]
    pub idempotency: IdempotencyArg,
}

/// `artifact-store register`.
#[derive(Debug, Clone, clap::Args)]
pub struct ArtifactStoreRegister {
    #[command(flatten)]
    pub common: RegisterArgs,
    /// Where artifacts go (`s3://bucket/prefix`): the same as --config path=...
    #[arg(long, value_name = "URI")]
    pub path: Option<String>,
}

/// `container-registry register`.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerRegistryRegister {
    #[command(flatten)]
    pub common: RegisterArgs,
    /// The registry (`123456789012.dkr.ecr.us-east-1.amazonaws.com`): the same as
    /// --config uri=...
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
}

/// The flavor, checked against those the type has.
fn checked_flavor(kind: ComponentType, flavor: &str) -> anyhow::Result<()> {
    if flavor_requirement(kind, flavor).is_none() {
        return Err(UsageError(format!(
            "{} has no flavor {flavor:?}: it has {}",
            command_name(kind),
            flavors(kind).join(", ")
        ))
        .into());
    }
    Ok(())
}

/// The command's name for a component type (`artifact-store`).
pub fn command_name(kind: ComponentType) -> &'static str {
    match kind {
        ComponentType::ArtifactStore => "artifact-store",
        ComponentType::ContainerRegistry => "container-registry",
        ComponentType::Orchestrator => "orchestrator",
    }
}

impl RegisterArgs {
    /// Runs `register`; `sugar` is the value of `--path`/`--uri`, stored as `sugar_key`.
    async fn run(
        self,
        ctx: &Context,
        kind: ComponentType,
        sugar_key: &str,
        sugar: Option<String>,
    ) -> anyhow::Result<()> {
        checked_flavor(kind, &self.flavor)?;
        let mut configuration = Map::new();
        for (k, v) in &self.config {
            configuration.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(value) = sugar {
            if configuration.contains_key(sugar_key) {
                return Err(UsageError(format!(
                    "--{sugar_key} and --config {sugar_key}=... say the same: pass one"
                ))
                .into());
            }
            configuration.insert(sugar_key.to_owned(), Value::String(value));
        }
        let client = ctx.client().await?;
        let request = NewComponent {
            name: self.name.clone(),
            component_type: kind.as_str().to_owned(),
            flavor: self.flavor.clone(),
            configuration,
            connector: self.connector.clone(),
            resource_id: self.resource_id.clone(),
        };
        let key = self.idempotency.key();
        let component = settle(client.register_component(&request, Some(&key)).await, &key)?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!(
                "Registered {} {}\n",
                command_name(kind),
                component.name
            ))?;
        }
        print_component(ctx, &component)
    }
}

/// The verbs every component type has.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ComponentVerb {
    /// Link the component to a connector and one of its resources (-i: pick the resource
    /// from those the connector reaches).
    Connect(ConnectArgs),
    /// Unlink the component from its connector.
    Disconnect(NameArg),
    /// List components of this type.
    List(ListArgs),
    /// Show one component.
    Describe(NameArg),
    /// Change configuration fields (`KEY=` removes one).
    Update(UpdateArgs),
    /// Delete the component.
    Delete(DeleteArgs),
    /// Get short-lived credentials for the component's resource, through its connector.
    Credentials(CredentialsArgs),
}

/// A component, by name.
#[derive(Debug, Clone, clap::Args)]
pub struct NameArg {
    /// The component's name or id.
    pub name: String,
}

/// `connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The component's name or id.
    pub name: String,
    /// The connector (name or id).
    #[arg(long, value_name = "CONNECTOR")]
    pub connector: String,
    /// The connector's resource to use [default: the one the component's configuration
    /// names].
    #[arg(long, value_name = "ID", conflicts_with = "interactive")]
    pub resource_id: Option<String>,
    /// Pick the resource from those the connector reaches.
    #[arg(long, short = 'i')]
    pub interactive: bool,
}

/// `list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Components per page [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

/// `update`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpdateArgs {
    /// The component's name or id.
    pub name: String,
    /// Set a configuration field (repeatable); `KEY=` removes it.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = input::key_value, required = true)]
    pub config: Vec<(String, String)>,
}

/// `delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The component's name or id.
    pub name: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `credentials`.
#[derive(Debug, Clone, clap::Args)]
pub struct CredentialsArgs {
    /// The component's name or id.
    pub name: String,
    /// How long they should last, in seconds [default: the connector's].
    #[arg(long, value_name = "N")]
    pub expiration_seconds: Option<u64>,
    /// Print them for a tool instead of as a table.
    #[arg(long, value_enum)]
    pub format: Option<CredentialFormat>,
}

impl ComponentVerb {
    async fn run(self, ctx: &Context, kind: ComponentType) -> anyhow::Result<()> {
        let t = kind.as_str();
        if let Self::Credentials(args) = &self {
            check_format(ctx, args.format)?;
        }
        if let Self::Delete(args) = &self
            && !args.yes
        {
            prompt::ensure_can_confirm("delete")?;
        }
        let client = ctx.client().await?;
        match self {
            Self::Connect(args) => {
                let resource_id = if args.interactive {
                    pick_resource(ctx, kind, &args.name, &args.connector).await?
                } else {
                    args.resource_id
                };
                let component = client
                    .connect_component(t, &args.name, &args.connector, resource_id.as_deref())
                    .await?;
                if ctx.output() == OutputFormat::Table {
                    output::emit(&format!(
                        "Connected {} {} to service connector {}\n",
                        command_name(kind),
                        component.name,
                        args.connector
                    ))?;
                }
                print_component(ctx, &component)
            }
            Self::Disconnect(args) => {
                let component = client.disconnect_component(t, &args.name).await?;
                if ctx.output() == OutputFormat::Table {
                    output::emit(&format!(
                        "Disconnected {} {}\n",
                        command_name(kind),
                        component.name
                    ))?;
                }
                print_component(ctx, &component)
            }
            Self::List(args) => {
                let page = client.list_components(t, args.page, args.size).await?;
                match ctx.output() {
                    OutputFormat::Json => output::emit_json(&page),
                    OutputFormat::Table => {
                        output::emit(&component_table(&page.items, args.wide.view()).render())?;
                        page_footer(&page, &format!("{}s", command_name(kind)));
                        Ok(())
                    }
                }
            }
            Self::Describe(args) => {
                let component = client.get_component(t, &args.name).await?;
                print_component(ctx, &component)
            }
            Self::Update(args) => {
                let mut configuration = Map::new();
                for (k, v) in &args.config {
                    configuration.insert(k.clone(), input::config_value(None, k, v, true)?);
                }
                let component = client
                    .update_component(t, &args.name, &configuration)
                    .await?;
                print_component(ctx, &component)
            }
            Self::Delete(args) => {
                if !args.yes {
                    let question = format!(
                        "Delete {} {:?}? Credentials it was given stay valid until they expire.",
                        command_name(kind),
                        args.name
                    );
                    prompt::confirm_or_abort(question, "deleted").await?;
                }
                client.delete_component(t, &args.name).await?;
                if ctx.output() == OutputFormat::Table {
                    output::emit(&format!("Deleted {} {}\n", command_name(kind), args.name))?;
                }
                Ok(())
            }
            Self::Credentials(args) => {
                let issued = client
                    .component_credentials(t, &args.name, args.expiration_seconds)
                    .await?;
                let label = format!(
                    "{} (for {} {})",
                    issued.connector_id.clone().unwrap_or_default(),
                    command_name(kind),
                    args.name
                );
                print_credentials(ctx, &label, &issued, args.format)
            }
        }
    }
}

/// `connect -i`: the resources of the type the component's flavor needs that the
/// connector reaches, one picked by the person.
async fn pick_resource(
    ctx: &Context,
    kind: ComponentType,
    name: &str,
    connector: &str,
) -> anyhow::Result<Option<String>> {
    input::require_terminal()?;
    let client = ctx.client().await?;
    let component = client.get_component(kind.as_str(), name).await?;
    let Some(needs) = flavor_requirement(kind, &component.flavor) else {
        anyhow::bail!(
            "this CLI does not know what flavor {} of {} needs: pass --resource-id",
            component.flavor,
            command_name(kind)
        );
    };
    let found = client
        .list_connector_resources(Some(needs.connector_type), Some(needs.resource_type), None)
        .await?;
    let mut ids: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for c in found
        .iter()
        .filter(|c| c.connector_name == connector || c.connector_id == connector)
    {
        for r in c
            .resources
            .iter()
            .filter(|r| r.resource_type == needs.resource_type)
        {
            ids.extend(r.resource_ids.clone().unwrap_or_default());
            errors.extend(r.error.clone());
        }
    }
    if ids.is_empty() {
        anyhow::bail!(
            "service connector {connector} reaches no {} you may use{}",
            needs.resource_type,
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            }
        );
    }
    let options: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), String::new())).collect();
    let question = format!("{} for {} {name}", needs.resource_type, command_name(kind));
    let picked = prompt::blocking(move || input::choose(&question, &options)).await?;
    Ok(ids.into_iter().nth(picked))
}

fn link_text(c: &Component) -> (String, String) {
    match &c.connector {
        Some(link) => (
            if link.connector_name.is_empty() {
                link.connector_id.clone()
            } else {
                link.connector_name.clone()
            },
            match &link.resource_id {
                Some(id) => id.clone(),
                None => link.resource_type.clone(),
            },
        ),
        None => ("(none)".to_owned(), String::new()),
    }
}

/// The list table of components.
pub(super) fn component_table(components: &[Component], view: View) -> Table {
    let mut table = Table::list(
        &[
            ("name", Col::Always),
            ("flavor", Col::Always),
            ("connector", Col::Always),
            ("resource", Col::Flex),
            ("id", Col::Wide),
            (&output::utc("created"), Col::Wide),
        ],
        view,
    );
    for c in components {
        let (connector, resource) = link_text(c);
        table.push([
            c.name.clone(),
            c.flavor.clone(),
            connector,
            resource,
            c.id.clone(),
            output::optional_time(c.created.as_deref(), ""),
        ]);
    }
    table
}

fn describe_component(c: &Component) -> String {
    let mut rows = vec![
        ("name".to_owned(), c.name.clone()),
        ("id".to_owned(), c.id.clone()),
        ("type".to_owned(), c.component_type.clone()),
        ("flavor".to_owned(), c.flavor.clone()),
    ];
    for (k, v) in &c.configuration {
        let value = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        rows.push((format!("config {k}"), value));
    }
    match &c.connector {
        Some(link) => {
            let (connector, _) = link_text(c);
            rows.push(("connector".to_owned(), connector));
            rows.push(("resource type".to_owned(), link.resource_type.clone()));
            rows.push((
                "resource id".to_owned(),
                link.resource_id.clone().unwrap_or_else(|| "-".into()),
            ));
        }
        None => rows.push(("connector".to_owned(), "none".to_owned())),
    }
    if let Some(owner) = &c.owner {
        rows.push(("owner".to_owned(), owner.clone()));
    }
    rows.push((
        "created".to_owned(),
        output::optional_time_utc(c.created.as_deref(), ""),
    ));
    rows.push((
        "updated".to_owned(),
        output::optional_time_utc(c.updated.as_deref(), ""),
    ));
    rows.extend(output::extra_fields(&c.extra));
    output::describe(rows)
}

fn print_component(ctx: &Context, c: &Component) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(c),
        OutputFormat::Table => output::emit(&describe_component(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(linked: bool) -> Component {
        let connector = linked.then(|| {
            serde_json::json!({"connector_id": "c1", "connector_name": "aws-ml-production",
                "resource_type": "s3-bucket", "resource_id": "s3://recommendation-models-training-artifacts"})
        });
        serde_json::from_value(serde_json::json!({
            "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": "training-artifacts",
            "type": "artifact_store", "flavor": "s3",
            "configuration": {"path": "s3://recommendation-models-training-artifacts/runs"},
            "owner": "u1", "connector": connector, "created": "2026-12-03T11:00:00Z",
            "updated": "2026-12-03T11:00:00Z"}))
        .expect("component")
    }

    #[test]
    fn the_component_list_fits_80_columns() {
        let list = [component(true), component(false)];
        let text = component_table(&list, View::Default).render();
        assert!(
            text.lines().all(|l| l.chars().count() <= output::WIDTH),
            "{text}"
        );
        assert!(text.contains("(none)"), "{text}");
    }

    #[test]
    fn describe_shows_the_link_and_configuration() {
        let text = describe_component(&component(true));
        assert!(text.contains("CONFIG PATH"), "{text}");
        assert!(text.contains("aws-ml-production"), "{text}");
        assert!(
            text.contains("s3://recommendation-models-training-artifacts"),
            "{text}"
        );
    }

    #[test]
    fn flavors_are_checked_against_the_contract() {
        assert!(checked_flavor(ComponentType::ArtifactStore, "s3").is_ok());
        let error = checked_flavor(ComponentType::ArtifactStore, "gcs").expect_err("gcs");
        assert!(error.to_string().contains("it has s3"), "{error}");
    }
}
