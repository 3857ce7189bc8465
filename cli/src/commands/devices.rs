//! `gatehouse authorized-device ...`: the devices that logged in with the device flow
//! (`gatehouse login` in a browser), and approving a device from the terminal.

use uuid::Uuid;

use super::prompt::{self, blocking};
use super::users::page_footer;
use super::{Context, Globals};
use crate::client::GatehouseClient;
use crate::client::{Device, DeviceDecision, DeviceFilters, DeviceStatus, Page};
use crate::output::{self, Col, OutputFormat, Table, View};

/// Manage authorized devices.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeviceCommand {
    /// List your authorized devices (admins: everyone's).
    List(ListArgs),
    /// Show one device: status, trust, owner, what it said about itself, where from.
    Describe(IdArgs),
    /// Lock a device: its token is refused at once, until you unlock it.
    Lock(IdArgs),
    /// Unlock a locked device: its token works again if it has not expired.
    Unlock(IdArgs),
    /// Delete a device: its token stops working at once, for good.
    Delete(DeleteArgs),
    /// Approve (or deny) a device that shows a code, for your account, from this terminal
    /// instead of the browser page.
    Approve(ApproveArgs),
}

impl DeviceCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        let ctx = Context::new(globals)?;
        match self {
            DeviceCommand::List(args) => args.run(&ctx).await,
            DeviceCommand::Describe(args) => {
                let client = ctx.client().await?;
                let id = args.id.resolve(&client).await?;
                let device = client.get_device(id).await?;
                print_device(&ctx, &device)
            }
            DeviceCommand::Lock(args) => args.lock(&ctx, true).await,
            DeviceCommand::Unlock(args) => args.lock(&ctx, false).await,
            DeviceCommand::Delete(args) => args.run(&ctx).await,
            DeviceCommand::Approve(args) => args.run(&ctx).await,
        }
    }
}

/// `authorized-device list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only devices with this status.
    #[arg(long, value_enum)]
    pub status: Option<DeviceStatus>,
    /// Page number, from 1.
    #[arg(long, value_name = "N")]
    pub page: Option<u64>,
    /// Devices per page (1 to 1000) [server default: 20].
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub wide: output::WideArg,
}

impl ListArgs {
    /// Runs `authorized-device list`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let filters = DeviceFilters {
            status: self.status,
            page: self.page,
            size: self.size,
        };
        let page = ctx.client().await?.list_devices(&filters).await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&page),
            OutputFormat::Table => {
                let table = device_table(&page, this_device(ctx), self.wide.view());
                output::emit(&table.render())?;
                page_footer(&page, "authorized devices");
                Ok(())
            }
        }
    }
}

/// A device as typed: its whole id, or a unique prefix of it (at least 4 characters), as
/// git takes commits. The list shows ids abbreviated this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef(String);

/// The shortest abbreviation the list shows.
const MIN_ABBREV: usize = 8;

/// Parses a device id or id prefix, with a hint where to find one.
fn parse_device_id(input: &str) -> Result<DeviceRef, String> {
    let text = input.trim().to_ascii_lowercase();
    let hexish = text.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if text.len() < 4 || text.len() > 36 || !hexish {
        return Err(
            "not a device id: ids look like 0190f0a8-3b1c-7000-8000-00000000d001 (a unique \
             prefix such as 0190f0a8 will do); `gatehouse authorized-device list` shows them"
                .to_owned(),
        );
    }
    Ok(DeviceRef(text))
}

impl DeviceRef {
    /// The device's id: the whole id as given, or the one device (among those the caller
    /// may see) whose id starts with the prefix.
    async fn resolve(&self, client: &GatehouseClient) -> anyhow::Result<Uuid> {
        if let Ok(id) = Uuid::parse_str(&self.0) {
            return Ok(id);
        }
        let mut matches = Vec::new();
        let mut filters = DeviceFilters {
            status: None,
            page: Some(1),
            size: Some(1000),
        };
        loop {
            let page = client.list_devices(&filters).await?;
            matches.extend(
                page.items
                    .iter()
                    .map(|d| d.id)
                    .filter(|id| id.to_string().starts_with(&self.0)),
            );
            let index = filters.page.unwrap_or(1);
            if index >= page.total_pages {
                break;
            }
            filters.page = Some(index + 1);
        }
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => anyhow::bail!(
                "no authorized device id starts with {} (unknown, deleted, or not yours): \
                 `gatehouse authorized-device list` shows yours",
                self.0
            ),
            many => anyhow::bail!(
                "the prefix {} is ambiguous: it starts {} device ids ({}); type more of the id",
                self.0,
                many.len(),
                many.iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Each id shortened to the shortest prefix (at least [`MIN_ABBREV`] characters) that
/// tells the listed devices apart.
fn abbreviated_ids(ids: &[Uuid]) -> Vec<String> {
    let full: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let len = (MIN_ABBREV..36)
        .find(|&n| {
            let mut seen = std::collections::HashSet::new();
            full.iter().all(|id| seen.insert(&id[..n]))
        })
        .unwrap_or(36);
    full.into_iter().map(|id| id[..len].to_owned()).collect()
}

/// A device, by id.
#[derive(Debug, Clone, clap::Args)]
pub struct IdArgs {
    /// The device's id, or a unique prefix of it (from `gatehouse authorized-device list`).
    #[arg(value_name = "ID", value_parser = parse_device_id)]
    pub id: DeviceRef,
}

impl IdArgs {
    /// Runs `lock` (`locked`) or `unlock`.
    async fn lock(self, ctx: &Context, locked: bool) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        let id = self.id.resolve(&client).await?;
        let device = if locked {
            client.lock_device(id).await?
        } else {
            client.unlock_device(id).await?
        };
        if ctx.output() == OutputFormat::Json {
            return output::emit_json(&device);
        }
        let what = if locked {
            "Locked device {id}: its token is refused until `gatehouse authorized-device unlock \
             {id}`."
        } else {
            "Unlocked device {id}: its token works again until it expires."
        };
        output::emit(&format!("{}\n", what.replace("{id}", &id.to_string())))?;
        output::emit(&describe_device(&device, this_device(ctx)))?;
        if locked && this_device(ctx) == Some(id) {
            eprintln!(
                "This is the device you are logged in on: its commands are refused now. Unlock \
                 it from another session, or log in again."
            );
        }
        Ok(())
    }
}

/// `authorized-device delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The device's id, or a unique prefix of it (from `gatehouse authorized-device list`).
    #[arg(value_name = "ID", value_parser = parse_device_id)]
    pub id: DeviceRef,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl DeleteArgs {
    /// Runs `authorized-device delete`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let client = ctx.client().await?;
        if !self.yes {
            prompt::ensure_can_confirm("delete")?;
        }
        let id = self.id.resolve(&client).await?;
        let current = this_device(ctx) == Some(id);
        if !self.yes {
            // Show what is about to go (and fail early on a wrong id).
            let device = client.get_device(id).await?;
            prompt::confirm_or_abort(delete_question(&device, current), "deleted").await?;
        }
        client.delete_device(id).await?;
        if ctx.output() == OutputFormat::Table {
            output::emit(&format!("Deleted device {id}\n"))?;
        }
        if current {
            eprintln!("That was the device you are logged in on: run `gatehouse login` again.");
        }
        Ok(())
    }
}

/// The confirmation question of `delete`.
fn delete_question(device: &Device, current: bool) -> String {
    let about = [device.hostname.as_deref(), device.os.as_deref()]
        .into_iter()
        .flatten()
        .map(output::sanitize)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "Delete device {}{}{}? Its token stops working at once.",
        device.id,
        if about.is_empty() {
            String::new()
        } else {
            format!(" ({about})")
        },
        if current {
            ", the one you are logged in on"
        } else {
            ""
        }
    )
}

/// `authorized-device approve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Approve only a code that a device of yours shows right now, after you started `gatehouse login`
on it yourself: whoever holds an approved code's device is logged in as you. The code is
checked here before anything is sent (8 letters from BCDFGHJKLMNPQRSTVWXZ, dash optional,
any case); wrong codes sent to the server count against you.

Before approving, the command shows what is asking (host, OS, client, address, when) and asks
for confirmation; `--yes` skips the question (required when stdin is not a terminal). Denying
asks nothing.

Examples:
  gatehouse authorized-device approve WDJB-MJHT
  gatehouse authorized-device approve wdjbmjht --trust
  gatehouse authorized-device approve WDJB-MJHT --trust --yes
  gatehouse authorized-device approve WDJB-MJHT --deny")]
pub struct ApproveArgs {
    /// The code the device shows (`WDJB-MJHT`).
    #[arg(value_name = "CODE")]
    pub code: String,
    /// Trust the device: its token lasts 30 days instead of 24 hours (server defaults).
    #[arg(long, conflicts_with = "deny")]
    pub trust: bool,
    /// Refuse the device instead: its login fails.
    #[arg(long)]
    pub deny: bool,
    /// Approve without showing the device and asking first (required when stdin is not a
    /// terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl ApproveArgs {
    fn decision(&self) -> DeviceDecision {
        if self.deny {
            DeviceDecision::Deny
        } else {
            DeviceDecision::Approve {
                trusted: self.trust,
            }
        }
    }

    /// Runs `authorized-device approve`.
    pub async fn run(self, ctx: &Context) -> anyhow::Result<()> {
        let code = checked_user_code(&self.code)?;
        let decision = self.decision();
        let client = ctx.client().await?;
        if let DeviceDecision::Approve { trusted } = decision
            && !self.yes
        {
            if !prompt::stdin_is_terminal() {
                anyhow::bail!(
                    "refusing to approve without confirmation: stdin is not a terminal; check \
                     that the device shows {code} and pass --yes"
                );
            }
            let device = client.lookup_device(&code).await?;
            let question = approve_question(&device, trusted);
            if !blocking(move || prompt::confirm(&question)).await? {
                anyhow::bail!(
                    "aborted: nothing was approved (the device keeps waiting until its code expires)"
                );
            }
        }
        let device = client.verify_device(&code, decision).await?;
        match ctx.output() {
            OutputFormat::Json => output::emit_json(&device),
            OutputFormat::Table => output::emit(&decision_line(&device, decision)),
        }
    }
}

/// The code normalised to `XXXX-XXXX`, or an error before anything is sent.
fn checked_user_code(typed: &str) -> anyhow::Result<String> {
    use gatehouse_contracts::devices::{display_user_code, normalize_user_code};
    normalize_user_code(typed)
        .map(|code| display_user_code(&code))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{:?} is not a device code: codes are 8 letters from BCDFGHJKLMNPQRSTVWXZ, shown \
                 XXXX-XXXX (nothing was sent to the server)",
                output::sanitize(typed)
            )
        })
}

/// The confirmation question of `approve`: what is asking, and what approving means.
fn approve_question(device: &Device, trusted: bool) -> String {
    format!(
        "Device {}{}, asking since {} (client {}), wants to sign in.\nApprove it as you{}? \
         Whoever holds this device is logged in as you.",
        device.id,
        device_summary(device),
        output::server_time_utc(&device.created),
        device
            .client_id
            .as_deref()
            .map_or_else(|| "-".to_owned(), output::sanitize),
        if trusted {
            ", trusted (30-day tokens by default)"
        } else {
            ", not trusted (24-hour tokens by default)"
        }
    )
}

/// What `approve` prints.
fn decision_line(device: &Device, decision: DeviceDecision) -> String {
    let about = device_summary(device);
    match decision {
        DeviceDecision::Approve { trusted } => format!(
            "Approved device {}{about} as {}; {}. It finishes logging in on its own.\n",
            device.id,
            output::sanitize(device.owner.as_deref().unwrap_or("you")),
            if trusted { "trusted" } else { "not trusted" }
        ),
        DeviceDecision::Deny => {
            format!("Denied device {}{about}: its login fails.\n", device.id)
        }
    }
}

/// ` (laptop, linux x86_64, from 192.0.2.7)`, or nothing when the device said nothing.
fn device_summary(device: &Device) -> String {
    let mut parts: Vec<String> = [device.hostname.as_deref(), device.os.as_deref()]
        .into_iter()
        .flatten()
        .map(output::sanitize)
        .collect();
    if let Some(ip) = &device.ip_address {
        parts.push(format!("from {}", output::sanitize(ip)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The device the saved session belongs to, when it is a device login to this gateway.
fn this_device(ctx: &Context) -> Option<Uuid> {
    if ctx.env_api_key.is_some() {
        return None;
    }
    let saved = ctx.store.load().ok().flatten()?;
    let same_gateway = ctx
        .globals
        .url
        .as_deref()
        .is_none_or(|url| url.trim_end_matches('/') == saved.url.trim_end_matches('/'));
    saved.device_id.filter(|_| same_gateway)
}

fn print_device(ctx: &Context, device: &Device) -> anyhow::Result<()> {
    match ctx.output() {
        OutputFormat::Json => output::emit_json(device),
        OutputFormat::Table => output::emit(&describe_device(device, this_device(ctx))),
    }
}

fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| "-".to_owned(), str::to_owned)
}

/// The describe table of a device.
fn describe_device(device: &Device, current: Option<Uuid>) -> String {
    let owner = match (&device.owner, device.owner_id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (Some(name), None) => name.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => "- (not approved yet)".to_owned(),
    };
    let mut rows = vec![
        ("id".to_owned(), device.id.to_string()),
        ("status".to_owned(), device.status.clone()),
        ("trusted".to_owned(), output::boolean(device.trusted)),
        ("owner".to_owned(), owner),
        ("hostname".to_owned(), or_dash(device.hostname.as_deref())),
        ("os".to_owned(), or_dash(device.os.as_deref())),
        ("client".to_owned(), or_dash(device.client_id.as_deref())),
        (
            "client version".to_owned(),
            or_dash(device.client_version.as_deref()),
        ),
        ("scope".to_owned(), or_dash(device.scope.as_deref())),
        (
            "ip address".to_owned(),
            or_dash(device.ip_address.as_deref()),
        ),
        (
            "created".to_owned(),
            output::server_time_utc(&device.created),
        ),
        (
            "verified".to_owned(),
            output::optional_time_utc(device.verified_at.as_deref(), "never"),
        ),
        (
            "last login".to_owned(),
            output::optional_time_utc(device.last_login.as_deref(), "never"),
        ),
        (
            "expires".to_owned(),
            output::optional_time_utc(device.expires.as_deref(), "-"),
        ),
    ];
    if current == Some(device.id) {
        rows.push((
            "this device".to_owned(),
            "yes (the saved session's)".to_owned(),
        ));
    }
    rows.extend(output::extra_fields(&device.extra));
    output::describe(rows)
}

/// The list table; the device of the saved session is marked `(this device)`. By default
/// ids are abbreviated to the shortest unique prefix, which every device command accepts.
pub(super) fn device_table(page: &Page<Device>, current: Option<Uuid>, view: View) -> Table {
    let mut table = Table::list(
        &[
            ("id", Col::Always),
            ("status", Col::Always),
            ("trusted", Col::Wide),
            ("owner", Col::Always),
            ("hostname", Col::Flex),
            ("os", Col::Wide),
            ("ip address", Col::Wide),
            (&output::utc("last login"), Col::Always),
            (&output::utc("expires"), Col::Wide),
        ],
        view,
    );
    let ids: Vec<Uuid> = page.items.iter().map(|d| d.id).collect();
    let shown_ids = match view {
        View::Default => abbreviated_ids(&ids),
        View::Wide => ids.iter().map(Uuid::to_string).collect(),
    };
    for (d, id) in page.items.iter().zip(shown_ids) {
        let mut hostname = or_dash(d.hostname.as_deref());
        if current == Some(d.id) {
            hostname.push_str(" (this device)");
        }
        table.push([
            id,
            d.status.clone(),
            output::boolean(d.trusted),
            or_dash(d.owner.as_deref()),
            hostname,
            or_dash(d.os.as_deref()),
            or_dash(d.ip_address.as_deref()),
            output::optional_time(d.last_login.as_deref(), "-"),
            output::optional_time(d.expires.as_deref(), "-"),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_json() -> serde_json::Value {
        serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-00000000d001", "status": "active", "trusted": true,
            "owner_id": "0190f0a8-3b1c-7000-8000-000000000001", "owner": "alice",
            "client_id": "gatehouse-cli", "scope": null, "hostname": "laptop",
            "os": "linux x86_64", "client_version": "0.1.0", "ip_address": "192.0.2.7",
            "created": "2025-01-01T10:00:00Z", "verified_at": "2025-01-01T10:01:00Z",
            "last_login": "2025-01-01T10:01:05.123Z", "expires": "2025-01-31T10:01:05Z",
        })
    }

    fn pending_json() -> serde_json::Value {
        serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-00000000d002", "status": "pending", "trusted": false,
            "owner_id": null, "owner": null, "client_id": "gatehouse-cli", "scope": null,
            "hostname": null, "os": null, "client_version": null, "ip_address": null,
            "created": "2025-01-02T10:00:00Z", "verified_at": null, "last_login": null,
            "expires": "2025-01-02T10:10:00Z",
        })
    }

    fn page() -> Page<Device> {
        Page {
            index: 1,
            max_size: 20,
            total_pages: 1,
            total: 2,
            items: vec![
                serde_json::from_value(device_json()).expect("device"),
                serde_json::from_value(pending_json()).expect("device"),
            ],
            extra: Default::default(),
        }
    }

    #[test]
    fn the_list_table_has_the_documented_columns_and_marks_this_device() {
        let current = Uuid::parse_str("0190f0a8-3b1c-7000-8000-00000000d001").ok();
        assert_eq!(
            device_table(&page(), current, View::Wide).render(),
            "ID                                    STATUS   TRUSTED  OWNER  HOSTNAME              OS            IP ADDRESS  LAST LOGIN (UTC)     EXPIRES (UTC)\n\
             0190f0a8-3b1c-7000-8000-00000000d001  active   true     alice  laptop (this device)  linux x86_64  192.0.2.7   2025-01-01 10:01:05  2025-01-31 10:01:05\n\
             0190f0a8-3b1c-7000-8000-00000000d002  pending  false    -      -                     -             -           -                    2025-01-02 10:10:00\n"
        );
        assert!(
            !device_table(&page(), None, View::Wide)
                .render()
                .contains("this device")
        );
        // Ids that differ only at the end stay whole (and the host name gives way to fit
        // 80 columns); others are abbreviated.
        assert_eq!(
            device_table(&page(), current, View::Default).render(),
            "ID                                    STATUS   OWNER  HOSTNAME  LAST LOGIN (UTC)\n\
             0190f0a8-3b1c-7000-8000-00000000d001  active   alice  laptop …  2025-01-01 10:01:05\n\
             0190f0a8-3b1c-7000-8000-00000000d002  pending  -      -         -\n"
        );
    }

    #[test]
    fn approving_asks_with_what_is_asking_and_what_trust_means() {
        let mut json = pending_json();
        json["hostname"] = "build-box".into();
        json["ip_address"] = "192.0.2.9".into();
        let device: Device = serde_json::from_value(json).expect("device");
        assert_eq!(
            approve_question(&device, true),
            "Device 0190f0a8-3b1c-7000-8000-00000000d002 (build-box, from 192.0.2.9), asking \
             since 2025-01-02 10:00:00 UTC (client gatehouse-cli), wants to sign in.\nApprove it as \
             you, trusted (30-day tokens by default)? Whoever holds this device is logged in as you."
        );
        assert!(
            approve_question(&device, false).contains("not trusted (24-hour tokens by default)")
        );
    }

    #[test]
    fn describe_shows_every_field_and_unknown_ones() {
        let mut json = device_json();
        json["locked_by"] = "admin".into();
        let device: Device = serde_json::from_value(json).expect("device");
        assert_eq!(
            describe_device(&device, None),
            "ID              0190f0a8-3b1c-7000-8000-00000000d001\n\
             STATUS          active\n\
             TRUSTED         true\n\
             OWNER           alice (0190f0a8-3b1c-7000-8000-000000000001)\n\
             HOSTNAME        laptop\n\
             OS              linux x86_64\n\
             CLIENT          gatehouse-cli\n\
             CLIENT VERSION  0.1.0\n\
             SCOPE           -\n\
             IP ADDRESS      192.0.2.7\n\
             CREATED         2025-01-01 10:00:00 UTC\n\
             VERIFIED        2025-01-01 10:01:00 UTC\n\
             LAST LOGIN      2025-01-01 10:01:05 UTC\n\
             EXPIRES         2025-01-31 10:01:05 UTC\n\
             LOCKED BY       admin\n"
        );
        let pending: Device = serde_json::from_value(pending_json()).expect("device");
        let text = describe_device(&pending, Some(pending.id));
        assert!(
            text.contains("OWNER           - (not approved yet)\n"),
            "{text}"
        );
        assert!(text.contains("LAST LOGIN      never\n"), "{text}");
        assert!(text.contains("THIS DEVICE     yes"), "{text}");
    }

    #[test]
    fn json_output_is_the_servers_json() {
        let device: Device = serde_json::from_value(device_json()).expect("device");
        assert_eq!(serde_json::to_value(&device).expect("json"), device_json());
        let listing = serde_json::json!({
            "index": 1, "max_size": 20, "total_pages": 1, "total": 2,
            "items": [device_json(), pending_json()],
        });
        let page: Page<Device> = serde_json::from_value(listing.clone()).expect("page");
        assert_eq!(serde_json::to_value(&page).expect("json"), listing);
    }

    #[test]
    fn device_ids_or_prefixes_are_checked_with_a_hint() {
        assert_eq!(
            parse_device_id(" 0190F0A8-3b1c-7000-8000-00000000d001 "),
            Ok(DeviceRef("0190f0a8-3b1c-7000-8000-00000000d001".into()))
        );
        assert_eq!(
            parse_device_id("0190f0a8"),
            Ok(DeviceRef("0190f0a8".into()))
        );
        for bad in ["laptop", "019", "0190f0a8-3b1c-7000-8000-00000000d001-ff"] {
            let error = parse_device_id(bad).expect_err(bad);
            assert!(error.contains("authorized-device list"), "{error}");
        }
    }

    #[test]
    fn abbreviations_are_the_shortest_unique_prefix_of_at_least_eight() {
        let id = |s: &str| Uuid::parse_str(s).expect("uuid");
        let ids = [
            id("0190f0a8-3b1c-7000-8000-00000000d001"),
            id("0190f0b9-0000-7000-8000-00000000d002"),
        ];
        assert_eq!(abbreviated_ids(&ids), ["0190f0a8", "0190f0b9"]);
        let close = [
            id("0190f0a8-3b1c-7000-8000-00000000d001"),
            id("0190f0a8-3b2d-7000-8000-00000000d002"),
        ];
        assert_eq!(abbreviated_ids(&close), ["0190f0a8-3b1", "0190f0a8-3b2"]);
    }

    #[tokio::test]
    async fn a_prefix_resolves_to_the_one_device_it_starts() -> anyhow::Result<()> {
        use crate::testing::{MockServer, Reply};
        let server = MockServer::start(|request| {
            let page = request
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("page=")))
                .unwrap_or("1")
                .to_owned();
            let id = if page == "1" {
                "0190f0a8-3b1c-7000-8000-00000000d001"
            } else {
                "0190f0b9-3b1c-7000-8000-00000000d002"
            };
            let mut device = device_json();
            device["id"] = id.into();
            Reply::json(
                200,
                serde_json::json!({"index": page.parse::<u64>().unwrap_or(1), "max_size": 1000,
                    "total_pages": 2, "total": 2, "items": [device]}),
            )
        })
        .await?;
        let client = GatehouseClient::new(&server.url, Some("tok".to_owned().into()))?;
        let resolve = |text: &str| {
            let device = parse_device_id(text).map_err(anyhow::Error::msg);
            let client = client.clone();
            async move { device?.resolve(&client).await }
        };
        assert_eq!(
            resolve("0190f0b9").await?.to_string(),
            "0190f0b9-3b1c-7000-8000-00000000d002",
            "found on the second page"
        );
        let error = resolve("0190f0").await.expect_err("ambiguous").to_string();
        assert!(
            error.contains("ambiguous") && error.contains("d001"),
            "{error}"
        );
        let error = resolve("0190ffff").await.expect_err("none").to_string();
        assert!(
            error.contains("no authorized device id starts with"),
            "{error}"
        );
        // A whole id is used as given, without a listing.
        let before = server.requests().len();
        resolve("0190f0a8-3b1c-7000-8000-00000000d009").await?;
        assert_eq!(server.requests().len(), before);
        Ok(())
    }

    #[test]
    fn user_codes_are_checked_and_normalised_before_sending() {
        assert_eq!(
            checked_user_code("WDJB-MJHT").ok().as_deref(),
            Some("WDJB-MJHT")
        );
        assert_eq!(
            checked_user_code("wdjbmjht").ok().as_deref(),
            Some("WDJB-MJHT")
        );
        assert_eq!(
            checked_user_code(" wdjb mjht ").ok().as_deref(),
            Some("WDJB-MJHT")
        );
        for bad in ["", "WDJB-MJH", "WDJB-MJHTX", "AEIO-UUUU", "WDJB-MJH1"] {
            let error = checked_user_code(bad).expect_err(bad).to_string();
            assert!(error.contains("nothing was sent"), "{bad}: {error}");
        }
    }

    #[test]
    fn approve_and_deny_say_what_happened() {
        let device: Device = serde_json::from_value(device_json()).expect("device");
        assert_eq!(
            decision_line(&device, DeviceDecision::Approve { trusted: true }),
            "Approved device 0190f0a8-3b1c-7000-8000-00000000d001 (laptop, linux x86_64, from \
             192.0.2.7) as alice; trusted. It finishes logging in on its own.\n"
        );
        let pending: Device = serde_json::from_value(pending_json()).expect("device");
        assert_eq!(
            decision_line(&pending, DeviceDecision::Deny),
            "Denied device 0190f0a8-3b1c-7000-8000-00000000d002: its login fails.\n"
        );
        assert_eq!(
            DeviceDecision::Approve { trusted: false }.body("WDJB-MJHT"),
            serde_json::json!({"user_code": "WDJB-MJHT", "trusted_device": false})
        );
        assert_eq!(
            DeviceDecision::Deny.body("WDJB-MJHT"),
            serde_json::json!({"user_code": "WDJB-MJHT", "deny": true})
        );
    }

    #[test]
    fn the_delete_question_names_the_device() {
        let device: Device = serde_json::from_value(device_json()).expect("device");
        assert_eq!(
            delete_question(&device, true),
            "Delete device 0190f0a8-3b1c-7000-8000-00000000d001 (laptop, linux x86_64), the one \
             you are logged in on? Its token stops working at once."
        );
        let pending: Device = serde_json::from_value(pending_json()).expect("device");
        assert_eq!(
            delete_question(&pending, false),
            "Delete device 0190f0a8-3b1c-7000-8000-00000000d002? Its token stops working at \
             once."
        );
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        let mut json = device_json();
        json["hostname"] = "evil\u{1b}[2J".into();
        let device: Device = serde_json::from_value(json).expect("device");
        assert!(!decision_line(&device, DeviceDecision::Deny).contains('\u{1b}'));
        assert!(!describe_device(&device, None).contains('\u{1b}'));
        assert!(!delete_question(&device, false).contains('\u{1b}'));
    }
}
