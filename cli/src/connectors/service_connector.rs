//! `gatehouse service-connector ...`: the connector-type catalogue, connectors, their
//! resources, grants, credentials, and `login` (other tools' configuration).

use std::collections::BTreeMap;

use gatehouse_contracts::catalogue::{AuthMethodSpec, ConnectorTypeSpec};
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::client::{
    Connector, ConnectorFilters, ConnectorUpdate, CredentialsRequest, Grant, HIDDEN, NewConnector,
    SecretFields, Verification,
};
use super::formats::CredentialFormat;
use super::input::{self, SECRET_HINT};
use super::{autoconfig, integrations, page_footer, print_credentials, resources_cell};
use crate::commands::{Context, Globals, IdempotencyArg, UsageError, prompt, settle};
use crate::output::{self, Col, OutputFormat, Table, View};

/// Manage service connectors.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceConnectorCommand {
    /// List the connector types this server offers.
    ListTypes,
    /// Show a connector type: its auth methods and resource types (or one of each, in
    /// detail).
    DescribeType(DescribeTypeArgs),
    /// Register a connector: from options, from the local AWS configuration
    /// (--auto-configure), or guided by the catalogue (-i).
    Register(Box<RegisterArgs>),
    /// List connectors.
    List(ListArgs),
    /// Show a connector (secret values as [HIDDEN]).
    Describe(NameArg),
    /// Check that a connector works, and what it reaches.
    Verify(VerifyArgs),
    /// List what the connectors you may use reach.
    ListResources(ListResourcesArgs),
    /// Change a connector's configuration, labels, description, lifetime or secrets.
    Update(Box<UpdateArgs>),
    /// Delete a connector (refused while components use it); its secrets become
    /// unrecoverable.
    Delete(DeleteArgs),
    /// Get short-lived credentials for one resource.
    Credentials(CredentialsArgs),
    /// Configure the AWS CLI/SDKs, Docker or kubectl to get credentials from this
    /// connector by themselves.
    Login(LoginArgs),
    /// Let a user or service account use the connector (optionally only some resources).
    Grant(GrantArgs),
    /// End a principal's grant.
    RevokeGrant(RevokeGrantArgs),
    /// List who may use the connector.
    ListGrants(NameArg),
}

impl ServiceConnectorCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        match self {
            Self::ListTypes => list_types(&ctx).await,
            Self::DescribeType(args) => args.run(&ctx).await,
            Self::Register(args) => args.run(&ctx).await,
            Self::List(args) => args.run(&ctx).await,
            Self::Describe(args) => {
                let connector = ctx.client().await?.get_connector(&args.name).await?;
                print_connector(&ctx, &connector)
            }
            Self::Verify(args) => args.run(&ctx).await,
            Self::ListResources(args) => args.run(&ctx).await,
            Self::Update(args) => args.run(&ctx).await,
            Self::Delete(args) => args.run(&ctx).await,
            Self::Credentials(args) => args.run(&ctx).await,
            Self::Login(args) => args.run(&ctx).await,
            Self::Grant(args) => args.run(&ctx).await,
            Self::RevokeGrant(args) => args.run(&ctx).await,
            Self::ListGrants(args) => {
                let grants = ctx.client().await?.list_grants(&args.name).await?;
                match ctx.output() {
                    OutputFormat::Json => output::emit_json(&grants),
                    OutputFormat::Table => output::emit(&grant_table(&grants).render()),
                }
            }
        }
    }
}

/// A connector, by name or id.
#[derive(Debug, Clone, clap::Args)]
pub struct NameArg {
    /// The connector's name or id.
    pub name: String,
}

// ---- catalogue ----

async fn list_types(ctx: &Context) -> anyhow::Result<()> {
    let types = ctx.client().await?.list_connector_types().await?;
    match ctx.output() {
        OutputFormat::Json => output::emit_json(&types),
        OutputFormat::Table => {
            let mut table = Table::new(["type", "name", "auth methods", "resource types"]);
            for t in &types {
                table.push([
                    t.connector_type.clone(),
                    t.name.clone(),
                    t.auth_methods
                        .iter()
                        .map(|m| m.auth_method.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    t.resource_types
                        .iter()
                        .map(|r| r.resource_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ]);
            }
            output::emit(&table.render())
        }
    }
}

/// `describe-type`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeTypeArgs {
    /// The connector type (`aws`).
    #[arg(value_name = "TYPE")]
    pub connector_type: String,
    /// Show this auth method in detail: its configuration fields, secrets, lifetimes.
    #[arg(long)]
    pub auth_method: Option<String>,
    /// Show this resource type in detail: the id forms it accepts.
    #[arg(long)]
    pub resource_type: Option<String>,
}

impl DescribeTypeArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let spec = ctx
            .client()
            .await?
            .get_connector_type(&self.connector_type)
            .await?;
        let method = self
            .auth_method
            .as_deref()
            .map(|m| auth_method_of(&spec, m))
            .transpose()?;
        let resource = match self.resource_type.as_deref() {
            Some(r) => Some(spec.resource_type(r).ok_or_else(|| {
                UsageError(format!(
                    "{} has no resource type {r:?}: it has {}",
                    spec.connector_type,
                    names(spec.resource_types.iter().map(|r| r.resource_type.as_str()))
                ))
            })?),
            None => None,
        };
        if ctx.output() == OutputFormat::Json {
            return match (method, resource) {
                (Some(m), None) => output::emit_json(m),
                (None, Some(r)) => output::emit_json(r),
                (Some(m), Some(r)) => {
                    output::emit_json(&serde_json::json!({"auth_method": m, "resource_type": r}))
                }
                (None, None) => output::emit_json(&spec),
            };
        }
        let mut text = String::new();
        if method.is_none() && resource.is_none() {
            text.push_str(&type_overview(&spec));
        }
        if let Some(m) = method {
            text.push_str(&method_details(&spec, m));
        }
        if let Some(r) = resource {
            if method.is_some() {
                text.push('\n');
            }
            let mut rows = vec![
                ("resource type".to_owned(), r.resource_type.clone()),
                ("name".to_owned(), r.name.clone()),
                ("description".to_owned(), r.description.clone()),
                ("auth methods".to_owned(), r.auth_methods.join(", ")),
                (
                    "instances".to_owned(),
                    if r.supports_instances {
                        "yes: name one with --resource-id".to_owned()
                    } else {
                        "no: takes no resource id".to_owned()
                    },
                ),
            ];
            if !r.id_forms.is_empty() {
                rows.push(("id forms".to_owned(), r.id_forms.join(", ")));
            }
            if let Some(c) = &r.canonical_form {
                rows.push(("canonical form".to_owned(), c.clone()));
            }
            text.push_str(&output::describe(rows));
        }
        output::emit(&text)
    }
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The auth method `name` of `spec`, or an error listing its methods.
fn auth_method_of<'a>(
    spec: &'a ConnectorTypeSpec,
    name: &str,
) -> anyhow::Result<&'a AuthMethodSpec> {
    spec.auth_method(name).ok_or_else(|| {
        UsageError(format!(
            "{} has no auth method {name:?}: it has {}",
            spec.connector_type,
            names(spec.auth_methods.iter().map(|m| m.auth_method.as_str()))
        ))
        .into()
    })
}

fn lifetime(m: &AuthMethodSpec) -> String {
    match (m.min_expiration_seconds, m.max_expiration_seconds) {
        (Some(min), Some(max)) => format!(
            "{min}-{max} s{}",
            m.default_expiration_seconds
                .map(|d| format!(" (default {d})"))
                .unwrap_or_default()
        ),
        (None, Some(max)) => format!("up to {max} s"),
        _ if m.long_lived => "long-lived".to_owned(),
        _ => "-".to_owned(),
    }
}

fn type_overview(spec: &ConnectorTypeSpec) -> String {
    let mut text = output::describe([
        ("type", spec.connector_type.clone()),
        ("name", spec.name.clone()),
        ("description", spec.description.clone()),
    ]);
    let mut methods = Table::new(["auth method", "name", "lifetime", "revocable", "implicit"]);
    for m in &spec.auth_methods {
        methods.push([
            m.auth_method.clone(),
            m.name.clone(),
            lifetime(m),
            output::boolean(m.revocable),
            output::boolean(m.implicit),
        ]);
    }
    let mut resources = Table::new(["resource type", "name", "instances", "auth methods"]);
    for r in &spec.resource_types {
        resources.push([
            r.resource_type.clone(),
            r.name.clone(),
            output::boolean(r.supports_instances),
            r.auth_methods.join(", "),
        ]);
    }
    text.push('\n');
    text.push_str(&methods.render());
    text.push('\n');
    text.push_str(&resources.render());
    text
}

/// The configuration fields of a method: (name, required, type, description), required
/// ones first.
pub(super) fn config_fields(m: &AuthMethodSpec) -> Vec<(String, bool, String, String)> {
    let required: Vec<&str> = m
        .config_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields: Vec<(String, bool, String, String)> = m
        .config_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, p)| {
                    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
                    (
                        name.clone(),
                        required.contains(&name.as_str()),
                        text("type").to_owned(),
                        text("description").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    fields.sort_by_key(|f| !f.1);
    fields
}

fn method_details(spec: &ConnectorTypeSpec, m: &AuthMethodSpec) -> String {
    let mut text = output::describe([
        ("auth method", m.auth_method.clone()),
        ("name", m.name.clone()),
        ("description", m.description.clone()),
        ("lifetime", lifetime(m)),
        ("revocable", output::boolean(m.revocable)),
        ("long-lived", output::boolean(m.long_lived)),
        ("implicit", output::boolean(m.implicit)),
        (
            "resource types",
            names(
                spec.resource_types_of(&m.auth_method)
                    .iter()
                    .map(|r| r.resource_type.as_str()),
            ),
        ),
    ]);
    let mut fields = Table::new(["config field", "required", "type", "description"]);
    for (name, required, kind, description) in config_fields(m) {
        fields.push([name, output::boolean(required), kind, description]);
    }
    let mut secrets = Table::new(["secret field", "required", "description"]);
    for s in &m.secrets {
        secrets.push([
            s.name.clone(),
            output::boolean(s.required),
            s.description.clone(),
        ]);
    }
    text.push('\n');
    text.push_str(&fields.render());
    text.push('\n');
    text.push_str(&secrets.render());
    text
}

// ---- register ----

/// `register`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Secrets are never taken from the command line: each required secret field not given with
--secret NAME=@FILE (the file's contents) or --secret NAME=@- (stdin) is prompted for
without echo, and without a terminal the command fails naming it.

Examples:
  gatehouse service-connector register aws-ml --type aws --auth-method iam-role \\
      --resource-type s3-bucket --config region=us-east-1 \\
      --config role_arn=arn:aws:iam::123456789012:role/ml \\
      --secret aws_access_key_id=@key-id.txt --secret aws_secret_access_key=@secret.txt
  gatehouse service-connector register aws-ml --type aws --auto-configure
  gatehouse service-connector register aws-ml --type aws -i")]
pub struct RegisterArgs {
    /// Name, unique among connectors.
    pub name: String,
    /// The connector type (`gatehouse service-connector list-types`).
    #[arg(long = "type", value_name = "TYPE")]
    pub connector_type: String,
    /// The auth method (`gatehouse service-connector describe-type TYPE`).
    #[arg(long, value_name = "METHOD")]
    pub auth_method: Option<String>,
    /// A resource type it serves (repeatable) [default: all its auth method serves].
    #[arg(long = "resource-type", value_name = "TYPE")]
    pub resource_types: Vec<String>,
    /// The one resource it serves (`s3://bucket`) [default: any of its types].
    #[arg(long, value_name = "ID")]
    pub resource_id: Option<String>,
    /// A configuration field (repeatable), typed by the method's schema.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = input::key_value)]
    pub config: Vec<(String, String)>,
    /// A secret field from a file (NAME=@FILE) or stdin (NAME=@-); repeatable.
    #[arg(long = "secret", value_name = "NAME=@FILE")]
    pub secrets: Vec<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = input::key_value)]
    pub labels: Vec<(String, String)>,
    /// What it is for.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// The lifetime of the credentials it issues, in seconds [default: the method's].
    #[arg(long, value_name = "N")]
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials themselves expire (RFC 3339), for temporary ones.
    #[arg(long, value_name = "TIME", value_parser = input::rfc3339)]
    pub expires_at: Option<String>,
    /// Save without checking that the credentials work.
    #[arg(long)]
    pub no_verify: bool,
    /// Take the method, keys, role and region from the local AWS configuration
    /// (environment, shared credentials and config files).
    #[arg(long, conflicts_with = "interactive")]
    pub auto_configure: bool,
    /// Guided: pick the method and resource type and answer each field's question.
    #[arg(long, short = 'i')]
    pub interactive: bool,
    #[command(flatten)]
    pub idempotency: IdempotencyArg,
}

/// What a registration is made of before it is sent.
#[derive(Debug, Default)]
struct Draft {
    auth_method: Option<String>,
    resource_types: Vec<String>,
    resource_id: Option<String>,
    configuration: Map<String, Value>,
    secrets: SecretFields,
    expires_at: Option<String>,
}

impl RegisterArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let spec = client.get_connector_type(&self.connector_type).await?;
        let given_secrets = input::read_secrets(&self.secrets, &mut input::all_of_stdin)?;
        let mut draft = Draft {
            auth_method: self.auth_method.clone(),
            resource_types: self.resource_types.clone(),
            resource_id: self.resource_id.clone(),
            expires_at: self.expires_at.clone(),
            ..Draft::default()
        };
        if self.auto_configure {
            auto_configure(&spec, &mut draft)?;
        }
        if self.interactive {
            let spec = spec.clone();
            let config = self.config.clone();
            let given: Vec<String> = given_secrets.names().map(str::to_owned).collect();
            draft = prompt::blocking(move || guided(&spec, draft, &config, &given)).await?;
        }
        let Some(method_name) = draft.auth_method.clone() else {
            return Err(UsageError(format!(
                "pass --auth-method (one of {}), --auto-configure, or -i for a guided \
                 registration",
                names(spec.auth_methods.iter().map(|m| m.auth_method.as_str()))
            ))
            .into());
        };
        let method = auth_method_of(&spec, &method_name)?;
        for r in &draft.resource_types {
            if !spec
                .resource_types_of(&method.auth_method)
                .iter()
                .any(|t| &t.resource_type == r)
            {
                return Err(UsageError(format!(
                    "the auth method {method_name} cannot serve resource type {r:?}: it serves {}",
                    names(
                        spec.resource_types_of(&method_name)
                            .iter()
                            .map(|t| t.resource_type.as_str())
                    )
                ))
                .into());
            }
        }
        for (key, raw) in &self.config {
            let value = input::config_value(Some(&method.config_schema), key, raw, false)?;
            draft.configuration.insert(key.clone(), value);
        }
        for name in given_secrets.names() {
            if let Some(value) = given_secrets.get(name) {
                draft.secrets.insert(name, value.clone());
            }
        }
        // Required secrets not given: prompted for, hidden; never from the command line.
        let missing: Vec<&str> = method
            .secrets
            .iter()
            .filter(|s| s.required && !draft.secrets.contains(&s.name))
            .map(|s| s.name.as_str())
            .collect();
        if !missing.is_empty() {
            if !prompt::stdin_is_terminal() {
                return Err(UsageError(format!(
                    "the auth method {method_name} needs the secret {}: {SECRET_HINT}",
                    missing.join(", ")
                ))
                .into());
            }
            let missing: Vec<String> = missing.iter().map(|s| (*s).to_owned()).collect();
            let prompted = prompt::blocking(move || {
                let mut found = Vec::new();
                for name in missing {
                    match input::hidden(&format!("{name} (hidden): "))? {
                        Some(value) => found.push((name, value)),
                        None => anyhow::bail!("the secret {name} is required"),
                    }
                }
                Ok(found)
            })
            .await?;
            for (name, value) in prompted {
                draft.secrets.insert(name, value);
            }
        }
        let request = NewConnector {
            name: self.name.clone(),
            connector_type: spec.connector_type.clone(),
            auth_method: method_name,
            resource_types: draft.resource_types,
            resource_id: draft.resource_id,
            configuration: draft.configuration,
            secrets: draft.secrets,
            labels: self.labels.iter().cloned().collect(),
            description: self.description.clone(),
            expiration_seconds: self.expiration_seconds,
            expires_at: draft.expires_at,
            verify: self.no_verify.then_some(false),
        };
        if self.interactive && !self.no_verify {
            // Guided: show what the answers reach before saving them.
            let verification = client.verify_new_connector(&request).await?;
            eprint!("{}", verification_text(&self.name, &verification));
            prompt::confirm_or_abort(
                format!("Register service connector {}?", self.name),
                "registered",
            )
            .await?;
        }
        let key = self.idempotency.key();
        let connector = settle(client.register_connector(&request, Some(&key)).await, &key)?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!(
                "Registered service connector {}\n",
                connector.name
            ))?;
        }
        print_connector(ctx, &connector)
    }
}

/// Fills `draft` from the local AWS configuration: the method it fits (unless given), and
/// each field where the catalogue puts it (secret or configuration); what the method does
/// not take is left out, and said.
fn auto_configure(spec: &ConnectorTypeSpec, draft: &mut Draft) -> anyhow::Result<()> {
    if spec.connector_type != "aws" {
        return Err(UsageError(format!(
            "--auto-configure reads the local AWS configuration: it works for --type aws, not {}",
            spec.connector_type
        ))
        .into());
    }
    let found = autoconfig::discover(&|name| std::env::var(name).ok())?;
    let method_name = draft
        .auth_method
        .clone()
        .unwrap_or_else(|| found.auth_method.clone());
    let method = match (auth_method_of(spec, &method_name), &draft.auth_method) {
        (Ok(m), _) => m,
        (Err(e), Some(_)) => return Err(e),
        (Err(e), None) => {
            return Err(e.context(format!(
                "{} fits the auth method {method_name}, which this server does not offer: \
                 pass --auth-method",
                found.source
            )));
        }
    };
    let (configuration, secrets, left_out) = split_fields(method, found.fields);
    draft.configuration.extend(configuration);
    for name in secrets.names() {
        if let Some(v) = secrets.get(name) {
            draft.secrets.insert(name, v.clone());
        }
    }
    if draft.expires_at.is_none() {
        draft.expires_at = found.expires_at;
    }
    eprintln!(
        "From {}: auth method {method_name}; configuration {}; secrets {}{}",
        found.source,
        if draft.configuration.is_empty() {
            "none".to_owned()
        } else {
            draft
                .configuration
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        },
        names(draft.secrets.names()),
        if left_out.is_empty() {
            String::new()
        } else {
            format!(" (not used by {method_name}: {})", left_out.join(", "))
        }
    );
    draft.auth_method = Some(method_name);
    Ok(())
}

/// Splits found fields into configuration and secrets as `method` declares them; returns
/// the names it takes neither way.
fn split_fields(
    method: &AuthMethodSpec,
    fields: BTreeMap<String, SecretString>,
) -> (Map<String, Value>, SecretFields, Vec<String>) {
    use secrecy::ExposeSecret as _;
    let config_names: Vec<String> = config_fields(method).into_iter().map(|f| f.0).collect();
    let mut configuration = Map::new();
    let mut secrets = SecretFields::default();
    let mut left_out = Vec::new();
    for (name, value) in fields {
        if method.secret_names().any(|s| s == name) {
            secrets.insert(name, value);
        } else if config_names.contains(&name) {
            configuration.insert(name, Value::String(value.expose_secret().to_owned()));
        } else {
            left_out.push(name);
        }
    }
    (configuration, secrets, left_out)
}

/// The guided registration: method, resource type, each configuration field (required
/// first, with its description), each secret hidden. Answers given as options are kept.
fn guided(
    spec: &ConnectorTypeSpec,
    mut draft: Draft,
    given_config: &[(String, String)],
    given_secrets: &[String],
) -> anyhow::Result<Draft> {
    input::require_terminal()?;
    eprintln!("{}: {}", spec.name, spec.description);
    let method = match draft.auth_method.as_deref() {
        Some(name) => auth_method_of(spec, name)?,
        None => {
            let options: Vec<(String, String)> = spec
                .auth_methods
                .iter()
                .map(|m| {
                    (
                        m.auth_method.clone(),
                        format!("{}: {}", m.name, m.description),
                    )
                })
                .collect();
            &spec.auth_methods[input::choose("Auth method", &options)?]
        }
    };
    draft.auth_method = Some(method.auth_method.clone());
    if draft.resource_types.is_empty() {
        let types = spec.resource_types_of(&method.auth_method);
        let mut options: Vec<(String, String)> = vec![(
            "all".to_owned(),
            "every resource type the method serves".to_owned(),
        )];
        options.extend(types.iter().map(|r| {
            (
                r.resource_type.clone(),
                format!("{}: {}", r.name, r.description),
            )
        }));
        let picked = input::choose("Resource type", &options)?;
        if picked > 0 {
            let r = types[picked - 1];
            draft.resource_types = vec![r.resource_type.clone()];
            if r.supports_instances && draft.resource_id.is_none() {
                let forms = r.id_forms.join(", ");
                let id = input::text(&format!("Resource id ({forms}; empty: any)"), None)?;
                draft.resource_id = (!id.is_empty()).then_some(id);
            }
        }
    }
    for (name, required, _kind, description) in config_fields(method) {
        if given_config.iter().any(|(k, _)| *k == name) {
            continue;
        }
        let label = format!(
            "{name}{} ({description})",
            if required { "" } else { ", optional" }
        );
        loop {
            let answer = input::text(&label, None)?;
            if answer.is_empty() && required {
                eprintln!("{name} is required.");
                continue;
            }
            if !answer.is_empty() {
                let value =
                    input::config_value(Some(&method.config_schema), &name, &answer, false)?;
                draft.configuration.insert(name.clone(), value);
            }
            break;
        }
    }
    for s in &method.secrets {
        if given_secrets.contains(&s.name) {
            continue;
        }
        let label = format!(
            "{}{} ({}), hidden: ",
            s.name,
            if s.required { "" } else { ", optional" },
            s.description
        );
        loop {
            match input::hidden(&label)? {
                Some(v) => {
                    draft.secrets.insert(s.name.clone(), v);
                    break;
                }
                None if s.required => eprintln!("{} is required.", s.name),
                None => break,
            }
        }
    }
    Ok(draft)
}

// ---- list, describe ----

/// `list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only connectors of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub connector_type: Option<String>,
    /// Only connectors that serve this resource type.
    #[arg(long, value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Only connectors with this label (repeatable: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = input::key_value)]
    pub labels: Vec<(String, String)>,
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Connectors per page [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

impl ListArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let filters = ConnectorFilters {
            connector_type: self.connector_type,
            resource_type: self.resource_type,
            labels: self.labels,
            page: self.page,
            size: self.size,
        };
        let page = ctx.client().await?.list_connectors(&filters).await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&page),
            OutputFormat::Table => {
                output::emit(&connector_table(&page.items, self.wide.view()).render())?;
                page_footer(&page, "service connectors");
                Ok(())
            }
        }
    }
}

/// The list table of connectors.
pub(super) fn connector_table(connectors: &[Connector], view: View) -> Table {
    let mut table = Table::list(
        &[
            ("name", Col::Always),
            ("type", Col::Always),
            ("auth method", Col::Always),
            ("resource types", Col::Always),
            ("resource id", Col::Flex),
            ("labels", Col::Wide),
            ("id", Col::Wide),
            (&output::utc("created"), Col::Wide),
        ],
        view,
    );
    for c in connectors {
        table.push([
            c.name.clone(),
            c.connector_type.clone(),
            c.auth_method.clone(),
            if c.resource_types.is_empty() {
                "(all)".to_owned()
            } else {
                c.resource_types.join(",")
            },
            c.resource_id.clone().unwrap_or_else(|| "(any)".to_owned()),
            labels_text(&c.labels),
            c.id.clone(),
            output::optional_time(c.created.as_deref(), ""),
        ]);
    }
    table
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The describe view of a connector: secret fields by name, each `[HIDDEN]`.
pub(super) fn describe_connector(c: &Connector) -> String {
    let mut rows = vec![
        ("name".to_owned(), c.name.clone()),
        ("id".to_owned(), c.id.clone()),
        ("type".to_owned(), c.connector_type.clone()),
        ("auth method".to_owned(), c.auth_method.clone()),
        (
            "resource types".to_owned(),
            if c.resource_types.is_empty() {
                "all the auth method serves".to_owned()
            } else {
                c.resource_types.join(", ")
            },
        ),
        (
            "resource id".to_owned(),
            c.resource_id.clone().unwrap_or_else(|| "any".to_owned()),
        ),
        (
            "description".to_owned(),
            c.description.clone().unwrap_or_default(),
        ),
    ];
    for (k, v) in &c.configuration {
        rows.push((format!("config {k}"), value_text(v)));
    }
    for k in c.secrets.keys() {
        // Whatever the server sent, a describe never prints a secret value.
        rows.push((format!("secret {k}"), HIDDEN.to_owned()));
    }
    rows.push(("labels".to_owned(), labels_text(&c.labels)));
    rows.push((
        "lifetime".to_owned(),
        c.expiration_seconds
            .map(|s| format!("{s} s"))
            .unwrap_or_else(|| "the method's default".to_owned()),
    ));
    rows.push((
        "credentials expire".to_owned(),
        output::optional_time_utc(c.expires_at.as_deref(), "never"),
    ));
    rows.push((
        "long-lived".to_owned(),
        output::boolean(c.issues_long_lived_credentials),
    ));
    rows.push(("implicit".to_owned(), output::boolean(c.implicit)));
    if let Some(owner) = &c.owner {
        rows.push(("owner".to_owned(), owner.clone()));
    }
    if c.grants.is_empty() {
        rows.push(("grants".to_owned(), "none".to_owned()));
    }
    for g in &c.grants {
        rows.push(("grant".to_owned(), grant_text(g)));
    }
    rows.push(("components".to_owned(), c.components.len().to_string()));
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

fn grant_text(g: &Grant) -> String {
    let who = if g.principal_name.is_empty() {
        g.principal.clone()
    } else {
        g.principal_name.clone()
    };
    match &g.resource_ids {
        Some(ids) => format!("{who} ({})", ids.join(", ")),
        None => format!("{who} (all resources)"),
    }
}

fn grant_table(grants: &[Grant]) -> Table {
    let mut table = Table::new(["principal", "id", "resources"]);
    for g in grants {
        table.push([
            g.principal_name.clone(),
            g.principal.clone(),
            g.resource_ids
                .as_ref()
                .map_or_else(|| "(all)".to_owned(), |ids| ids.join(", ")),
        ]);
    }
    table
}

fn print_connector(ctx: &Context, c: &Connector) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(c),
        OutputFormat::Table => output::emit(&describe_connector(c)),
    }
}

// ---- verify, resources ----

/// `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The connector's name or id.
    pub name: String,
    /// Check access to this resource type.
    #[arg(long, value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Check access to this resource.
    #[arg(long, value_name = "ID", requires = "resource_type")]
    pub resource_id: Option<String>,
    /// List the resources it reaches.
    #[arg(long)]
    pub list_resources: bool,
}

impl VerifyArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let verification = ctx
            .client()
            .await?
            .verify_connector(
                &self.name,
                self.resource_type.as_deref(),
                self.resource_id.as_deref(),
                self.list_resources,
            )
            .await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&verification),
            OutputFormat::Table => output::emit(&verification_text(&self.name, &verification)),
        }
    }
}

fn verification_text(name: &str, v: &Verification) -> String {
    let mut text = format!(
        "Service connector {name} works{}.\n",
        v.identity
            .as_deref()
            .map(|i| format!(", authenticated as {}", output::sanitize(i)))
            .unwrap_or_default()
    );
    if !v.resources.is_empty() {
        let mut table = Table::new(["resource type", "resources"]);
        for r in &v.resources {
            table.push([r.resource_type.clone(), resources_cell(r)]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}

/// `list-resources`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListResourcesArgs {
    /// Only connectors of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub connector_type: Option<String>,
    /// Only this resource type.
    #[arg(long, value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Only connectors that reach this resource.
    #[arg(long, value_name = "ID")]
    pub resource_id: Option<String>,
}

impl ListResourcesArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let found = ctx
            .client()
            .await?
            .list_connector_resources(
                self.connector_type.as_deref(),
                self.resource_type.as_deref(),
                self.resource_id.as_deref(),
            )
            .await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&found),
            OutputFormat::Table => {
                let mut table = Table::list(
                    &[
                        ("connector", Col::Always),
                        ("type", Col::Always),
                        ("resource type", Col::Always),
                        ("resources", Col::Flex),
                    ],
                    View::Default,
                );
                for c in &found {
                    if let Some(error) = &c.error {
                        // A connector that could not be checked says why, in its row.
                        table.push([
                            c.connector_name.clone(),
                            c.connector_type.clone(),
                            self.resource_type.clone().unwrap_or_else(|| "-".to_owned()),
                            format!("error: {}", output::sanitize(error)),
                        ]);
                    }
                    for r in &c.resources {
                        table.push([
                            c.connector_name.clone(),
                            c.connector_type.clone(),
                            r.resource_type.clone(),
                            resources_cell(r),
                        ]);
                    }
                }
                output::emit(&table.render())?;
                if found.is_empty() {
                    eprintln!("No service connectors reach such resources.");
                }
                Ok(())
            }
        }
    }
}

// ---- update, delete ----

/// `update`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Examples:
  gatehouse service-connector update aws-ml --config region=eu-west-1 --label team=ml
  gatehouse service-connector update aws-ml --config endpoint_url=     # removes it
  gatehouse service-connector update aws-ml --secret aws_access_key_id=@id.txt \\
      --secret aws_secret_access_key=@secret.txt --verify")]
pub struct UpdateArgs {
    /// The connector's name or id.
    pub name: String,
    /// Set a configuration field (repeatable); `KEY=` removes it.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = input::key_value)]
    pub config: Vec<(String, String)>,
    /// Set a label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = input::key_value)]
    pub labels: Vec<(String, String)>,
    /// Remove a label (repeatable).
    #[arg(long = "remove-label", value_name = "KEY")]
    pub remove_labels: Vec<String>,
    /// New description.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// New lifetime of issued credentials, in seconds.
    #[arg(long, value_name = "N")]
    pub expiration_seconds: Option<u64>,
    /// A secret field from a file or stdin (repeatable): the given set replaces all the
    /// connector's secrets.
    #[arg(long = "secret", value_name = "NAME=@FILE")]
    pub secrets: Vec<String>,
    /// Verify the result before saving it.
    #[arg(long)]
    pub verify: bool,
}

impl UpdateArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let mut update = ConnectorUpdate {
            description: self.description.clone(),
            expiration_seconds: self.expiration_seconds,
            verify: self.verify,
            ..ConnectorUpdate::default()
        };
        if !self.secrets.is_empty() {
            update.secrets = Some(input::read_secrets(
                &self.secrets,
                &mut input::all_of_stdin,
            )?);
        }
        for (k, v) in &self.labels {
            update.labels.insert(k.clone(), v.clone().into());
        }
        for k in &self.remove_labels {
            update.labels.insert(k.clone(), Value::Null);
        }
        if !self.config.is_empty() {
            // Typed by the connector's method schema.
            let connector = client.get_connector(&self.name).await?;
            let spec = client.get_connector_type(&connector.connector_type).await?;
            let schema = spec
                .auth_method(&connector.auth_method)
                .map(|m| &m.config_schema);
            for (k, raw) in &self.config {
                update
                    .configuration
                    .insert(k.clone(), input::config_value(schema, k, raw, true)?);
            }
        }
        if !update.changes_something() {
            return Err(UsageError(
                "nothing to change: pass --config, --label, --remove-label, --description, \
                 --expiration-seconds or --secret"
                    .into(),
            )
            .into());
        }
        let connector = client.update_connector(&self.name, &update).await?;
        print_connector(ctx, &connector)
    }
}

/// `delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The connector's name or id.
    pub name: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl DeleteArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        if !self.yes {
            prompt::ensure_can_confirm("delete")?;
            let question = format!(
                "Delete service connector {:?}? Its secrets become unrecoverable, and \
                 credentials it issued stay valid until they expire.",
                self.name
            );
            prompt::confirm_or_abort(question, "deleted").await?;
        }
        client.delete_connector(&self.name).await?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!("Deleted service connector {}\n", self.name))?;
        }
        Ok(())
    }
}

// ---- credentials, login ----

/// `credentials`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
By default a table shows the lease and the credential field names, never their values.

Formats:
  env            export AWS_... lines:  eval \"$(gatehouse service-connector credentials aws-ml --resource-type s3-bucket --format env)\"
  aws-process    an AWS credential_process (see `login`)
  kube-exec      a kubectl exec plugin's ExecCredential (see `login`)
  docker-helper  a Docker credential helper's answer (see `login`)")]
pub struct CredentialsArgs {
    /// The connector's name or id.
    pub name: String,
    /// The resource type.
    #[arg(long, value_name = "TYPE")]
    pub resource_type: String,
    /// The resource (`s3://bucket`), for types with instances.
    #[arg(long, value_name = "ID")]
    pub resource_id: Option<String>,
    /// How long they should last, in seconds [default: the connector's].
    #[arg(long, value_name = "N")]
    pub expiration_seconds: Option<u64>,
    /// Print them for a tool instead of as a table.
    #[arg(long, value_enum)]
    pub format: Option<CredentialFormat>,
}

impl CredentialsArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        check_format(ctx, self.format)?;
        let issued = ctx
            .client()
            .await?
            .connector_credentials(
                &self.name,
                &CredentialsRequest {
                    resource_type: Some(self.resource_type.clone()),
                    resource_id: self.resource_id.clone(),
                    expiration_seconds: self.expiration_seconds,
                },
            )
            .await?;
        print_credentials(ctx, &self.name, &issued, self.format)
    }
}

/// `--format` prints for a tool; `-o json` the API's answer: not both.
pub(super) fn check_format(ctx: &Context, format: Option<CredentialFormat>) -> anyhow::Result<()> {
    if format.is_some() && ctx.output() == OutputFormat::Json {
        return Err(UsageError(
            "--format and -o json exclude each other: -o json prints the API's answer".into(),
        )
        .into());
    }
    Ok(())
}

/// `login`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
What it writes, by resource type:
  aws-generic, s3-bucket  a profile in the AWS config file (AWS_CONFIG_FILE, else
                          ~/.aws/config) whose credential_process runs this gatehouse binary:
                          `aws s3 ls --profile gatehouse-CONNECTOR`
  docker-registry         credHelpers {\"REGISTRY\": \"gatehouse\"} in the Docker config
                          ($DOCKER_CONFIG/config.json, else ~/.docker/config.json); Docker then
                          runs docker-credential-gatehouse, a link to this binary on PATH
                          (--install-helper DIR makes it)
  kubernetes-cluster      a cluster, user (exec plugin) and context in the kubeconfig (first
                          path of KUBECONFIG, else ~/.kube/config)

The tools then ask Gatehouse for fresh credentials whenever theirs expire, with your
Gatehouse login (or GATEHOUSE_URL and GATEHOUSE_API_KEY) in their environment.")]
pub struct LoginArgs {
    /// The connector's name or id.
    pub name: String,
    /// The resource type.
    #[arg(long, value_name = "TYPE")]
    pub resource_type: String,
    /// The resource (bucket, registry, cluster).
    #[arg(long, value_name = "ID")]
    pub resource_id: Option<String>,
    /// The AWS profile or kubeconfig context name [default: gatehouse-CONNECTOR].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// docker-registry: create DIR/docker-credential-gatehouse, a link to this binary
    /// (DIR should be on PATH).
    #[arg(long, value_name = "DIR")]
    pub install_helper: Option<std::path::PathBuf>,
}

impl LoginArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let tool = LoginTool::of(&self.resource_type)?;
        if self.install_helper.is_some() && tool != LoginTool::Docker {
            return Err(UsageError("--install-helper is for docker-registry".into()).into());
        }
        // One issue first: it proves access, and gives the region, registry or server.
        let issued = ctx
            .client()
            .await?
            .connector_credentials(
                &self.name,
                &CredentialsRequest {
                    resource_type: Some(self.resource_type.clone()),
                    resource_id: self.resource_id.clone(),
                    expiration_seconds: None,
                },
            )
            .await?;
        let exe = std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| anyhow::anyhow!("cannot find this gatehouse binary's path: {e}"))?;
        let paths = integrations::ToolPaths::from_env(|n| std::env::var_os(n))?;
        let resource_id = self.resource_id.clone().or(issued.resource_id.clone());
        let profile = self
            .profile
            .clone()
            .unwrap_or_else(|| format!("gatehouse-{}", self.name));
        let fields = &issued.credentials;
        let (summary, json) = match tool {
            LoginTool::Aws => {
                let aws = integrations::AwsProfile {
                    name: profile.clone(),
                    credential_process: integrations::credential_process_command(
                        &exe,
                        &self.name,
                        &self.resource_type,
                        self.resource_id.as_deref(),
                    ),
                    region: fields.str("region").map(str::to_owned),
                    endpoint_url: fields.str("endpoint_url").map(str::to_owned),
                };
                integrations::write_aws_profile(&paths.aws_config, &aws)?;
                let mut summary = format!(
                    "Wrote the AWS profile {profile} to {}:\n  credential_process = {}\n",
                    paths.aws_config.display(),
                    aws.credential_process
                );
                if let Some(r) = &aws.region {
                    summary.push_str(&format!("  region = {r}\n"));
                }
                if let Some(e) = &aws.endpoint_url {
                    summary.push_str(&format!("  endpoint_url = {e}\n"));
                }
                summary.push_str(&format!(
                    "Use it with --profile {profile} or AWS_PROFILE={profile}.\n"
                ));
                let json = serde_json::json!({"tool": "aws", "file": paths.aws_config,
                    "profile": profile, "credential_process": aws.credential_process,
                    "region": aws.region, "endpoint_url": aws.endpoint_url});
                (summary, json)
            }
            LoginTool::Docker => {
                let server = fields
                    .str("registry")
                    .map(str::to_owned)
                    .or_else(|| resource_id.clone())
                    .ok_or_else(|| {
                        anyhow::anyhow!("the credentials name no registry: pass --resource-id")
                    })?;
                let host = integrations::registry_host(&server);
                integrations::write_cred_helper(&paths.docker_config, &host)?;
                let mut logins = integrations::RegistryLogins::load(ctx.store.dir())?;
                logins.registries.insert(
                    host.clone(),
                    integrations::RegistryLogin {
                        connector: self.name.clone(),
                        resource_type: self.resource_type.clone(),
                        resource_id: resource_id.clone(),
                    },
                );
                logins.save(ctx.store.dir())?;
                let mut summary = format!(
                    "Docker asks docker-credential-{} for {host} now ({}).\n",
                    integrations::DOCKER_HELPER_NAME,
                    paths.docker_config.display()
                );
                let link = match &self.install_helper {
                    Some(dir) => {
                        let link = integrations::install_docker_helper(dir, &exe)?;
                        summary.push_str(&format!(
                            "Linked {} to {}; make sure its directory is on PATH.\n",
                            link.display(),
                            exe.display()
                        ));
                        Some(link)
                    }
                    None => {
                        summary.push_str(&format!(
                            "Docker runs it from PATH: link it once with\n  ln -s {} \
                             DIR/{}\n(DIR on PATH), or run login again with --install-helper DIR.\n",
                            exe.display(),
                            integrations::DOCKER_HELPER_PROGRAM
                        ));
                        None
                    }
                };
                let json = serde_json::json!({"tool": "docker", "file": paths.docker_config,
                    "registry": host, "helper": integrations::DOCKER_HELPER_PROGRAM, "link": link});
                (summary, json)
            }
            LoginTool::Kubectl => {
                let Some(server) = fields.str("server") else {
                    anyhow::bail!("the credentials name no cluster server");
                };
                let mut args: Vec<String> = vec![
                    "service-connector".into(),
                    "credentials".into(),
                    self.name.clone(),
                    "--resource-type".into(),
                    self.resource_type.clone(),
                ];
                if let Some(id) = &resource_id {
                    args.extend(["--resource-id".into(), id.clone()]);
                }
                args.extend(["--format".into(), "kube-exec".into()]);
                let context = integrations::KubeContext {
                    name: profile.clone(),
                    server: server.to_owned(),
                    certificate_authority_data: fields
                        .str("certificate_authority_data")
                        .map(str::to_owned),
                    command: exe.to_string_lossy().into_owned(),
                    args,
                };
                integrations::write_kubeconfig(&paths.kubeconfig, &context)?;
                let summary = format!(
                    "Wrote the kubeconfig context {profile} (cluster {server}) to {}.\n\
                     Use it with kubectl --context {profile} (or kubectl config use-context \
                     {profile}).\n",
                    paths.kubeconfig.display()
                );
                let json = serde_json::json!({"tool": "kubectl", "file": paths.kubeconfig,
                    "context": profile, "server": server});
                (summary, json)
            }
        };
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&json),
            OutputFormat::Table => output::emit(&summary),
        }
    }
}

/// Which tool `login` configures for a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginTool {
    Aws,
    Docker,
    Kubectl,
}

impl LoginTool {
    fn of(resource_type: &str) -> anyhow::Result<Self> {
        match resource_type {
            "aws-generic" | "s3-bucket" => Ok(Self::Aws),
            "docker-registry" => Ok(Self::Docker),
            "kubernetes-cluster" => Ok(Self::Kubectl),
            other => Err(UsageError(format!(
                "login configures tools for aws-generic, s3-bucket, docker-registry and \
                 kubernetes-cluster, not {other}: use `credentials --format` instead"
            ))
            .into()),
        }
    }
}

// ---- grants ----

/// `grant`.
#[derive(Debug, Clone, clap::Args)]
pub struct GrantArgs {
    /// The connector's name or id.
    pub name: String,
    /// The user or service account (name or id).
    #[arg(long, value_name = "PRINCIPAL")]
    pub to: String,
    /// Only this resource (repeatable) [default: every resource it reaches].
    #[arg(long = "resource-id", value_name = "ID")]
    pub resource_ids: Vec<String>,
}

impl GrantArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let connector = ctx
            .client()
            .await?
            .grant_connector(&self.name, &self.to, &self.resource_ids)
            .await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&connector),
            OutputFormat::Table => {
                output::emit(&format!(
                    "Granted service connector {} to {}{}\n",
                    connector.name,
                    self.to,
                    if self.resource_ids.is_empty() {
                        String::new()
                    } else {
                        format!(" for {}", self.resource_ids.join(", "))
                    }
                ))?;
                output::emit(&grant_table(&connector.grants).render())
            }
        }
    }
}

/// `revoke-grant`.
#[derive(Debug, Clone, clap::Args)]
pub struct RevokeGrantArgs {
    /// The connector's name or id.
    pub name: String,
    /// The user or service account (name or id).
    #[arg(long, value_name = "PRINCIPAL")]
    pub from: String,
}

impl RevokeGrantArgs {
    async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        ctx.client()
            .await?
            .revoke_grant(&self.name, &self.from)
            .await?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!(
                "{} may no longer use service connector {} (credentials already issued stay \
                 valid until they expire or their lease is revoked)\n",
                self.from, self.name
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn spec() -> ConnectorTypeSpec {
        serde_json::from_value(serde_json::json!({
            "connector_type": "aws", "name": "AWS", "description": "Amazon Web Services",
            "auth_methods": [{
                "auth_method": "iam-role", "name": "IAM role", "description": "assume a role",
                "config_schema": {"type": "object", "properties": {
                    "region": {"type": "string", "description": "AWS region"},
                    "endpoint_url": {"type": "string", "description": "custom endpoint"},
                    "role_arn": {"type": "string", "description": "the role"}},
                    "required": ["role_arn", "region"]},
                "secrets": [{"name": "aws_access_key_id", "required": true, "description": "key id"},
                    {"name": "aws_secret_access_key", "required": true, "description": "secret"}],
                "implicit": false, "long_lived": false, "revocable": false,
                "min_expiration_seconds": 900, "max_expiration_seconds": 43200,
                "default_expiration_seconds": 3600}],
            "resource_types": [{"resource_type": "s3-bucket", "name": "S3 bucket",
                "description": "a bucket", "auth_methods": ["iam-role"], "supports_instances": true,
                "id_forms": ["s3://{bucket}"], "canonical_form": "s3://{bucket}"}]
        }))
        .expect("spec")
    }

    #[test]
    fn config_fields_come_required_first() {
        let s = spec();
        let fields = config_fields(&s.auth_methods[0]);
        let order: Vec<(&str, bool)> = fields.iter().map(|f| (f.0.as_str(), f.1)).collect();
        assert_eq!(
            order,
            [
                ("region", true),
                ("role_arn", true),
                ("endpoint_url", false)
            ]
        );
    }

    #[test]
    fn auto_configured_fields_go_where_the_catalogue_says() {
        let s = spec();
        let fields: BTreeMap<String, SecretString> = [
            ("aws_access_key_id", "AKIA"),
            ("aws_secret_access_key", "wJalr"),
            ("aws_session_token", "FwoG"),
            ("region", "eu-west-1"),
            ("role_arn", "arn:aws:iam::1:role/r"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
        .collect();
        let (config, secrets, left_out) = split_fields(&s.auth_methods[0], fields);
        assert_eq!(
            Value::Object(config),
            serde_json::json!({"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r"})
        );
        assert_eq!(
            secrets.names().collect::<Vec<_>>(),
            ["aws_access_key_id", "aws_secret_access_key"]
        );
        assert_eq!(
            secrets
                .get("aws_secret_access_key")
                .map(|v| v.expose_secret().to_owned()),
            Some("wJalr".to_owned())
        );
        assert_eq!(left_out, ["aws_session_token"]);
    }

    #[test]
    fn describe_hides_secret_values_whatever_the_server_sent() {
        let connector: Connector = serde_json::from_value(serde_json::json!({
            "id": "c1", "name": "aws-ml", "connector_type": "aws", "auth_method": "iam-role",
            "configuration": {"region": "us-east-1"},
            "secrets": {"aws_secret_access_key": "leaked-by-a-bug"},
            "grants": [{"principal": "p1", "principal_name": "ci-bot", "resource_ids": ["s3://a"]}]
        }))
        .expect("connector");
        let text = describe_connector(&connector);
        assert!(!text.contains("leaked-by-a-bug"), "{text}");
        assert!(
            text.contains("SECRET AWS_SECRET_ACCESS_KEY  [HIDDEN]"),
            "{text}"
        );
        assert!(text.contains("ci-bot (s3://a)"), "{text}");
        assert!(text.contains("CONFIG REGION"), "{text}");
    }

    #[test]
    fn the_type_views_show_lifetimes_fields_and_secrets() {
        let s = spec();
        let overview = type_overview(&s);
        assert!(
            overview.contains("900-43200 s (default 3600)"),
            "{overview}"
        );
        assert!(overview.contains("s3-bucket"), "{overview}");
        let details = method_details(&s, &s.auth_methods[0]);
        assert!(details.contains("role_arn") && details.contains("aws_secret_access_key"));
        assert!(auth_method_of(&s, "nope").is_err());
    }

    #[test]
    fn login_knows_the_tool_of_each_resource_type() {
        assert_eq!(LoginTool::of("s3-bucket").ok(), Some(LoginTool::Aws));
        assert_eq!(LoginTool::of("aws-generic").ok(), Some(LoginTool::Aws));
        assert_eq!(
            LoginTool::of("docker-registry").ok(),
            Some(LoginTool::Docker)
        );
        assert_eq!(
            LoginTool::of("kubernetes-cluster").ok(),
            Some(LoginTool::Kubectl)
        );
        assert!(LoginTool::of("blob-container").is_err());
    }

    #[test]
    fn the_connector_list_fits_80_columns() {
        let c = |name: &str, id: Option<&str>| -> Connector {
            serde_json::from_value(serde_json::json!({
                "id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": name, "connector_type": "aws",
                "auth_method": "session-token", "resource_types": ["s3-bucket"],
                "resource_id": id, "labels": {"team": "ml"}, "created": "2026-12-03T11:15:42Z"}))
            .expect("connector")
        };
        let list = [
            c(
                "aws-ml-production",
                Some("s3://recommendation-models-training-artifacts-eu"),
            ),
            c("aws-dev", None),
        ];
        let text = connector_table(&list, View::Default).render();
        assert!(
            text.lines().all(|l| l.chars().count() <= output::WIDTH),
            "{text}"
        );
        let wide = connector_table(&list, View::Wide).render();
        assert!(
            wide.contains("team=ml") && wide.contains("0193a1b2"),
            "{wide}"
        );
    }
}
