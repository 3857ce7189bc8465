//! What `service-connector login` writes into other tools' configuration, so that they ask
//! Gatehouse for fresh credentials themselves, through their own refresh hook:
//!
//! - **AWS**: a profile in the shared config file (`AWS_CONFIG_FILE`, else
//!   `~/.aws/config`) whose `credential_process` runs this CLI. The file is edited as text,
//!   section by section: only the profile's own section is replaced; every other line
//!   (other profiles, comments, blank lines) is kept byte for byte.
//! - **Docker**: `credHelpers` `{"<registry>": "gatehouse"}` in `$DOCKER_CONFIG/config.json`
//!   (else `~/.docker/config.json`), every other key kept, and the registry's connector
//!   and resource recorded in the Gatehouse config dir (`docker-helpers.json`) for
//!   `docker-credential-gatehouse get`.
//! - **kubectl**: a cluster, a user with an exec plugin and a context in the first file of
//!   `KUBECONFIG` (else `~/.kube/config`), entries of other names kept (the YAML is parsed
//!   and written again: comments in a kubeconfig are not kept, as with `kubectl config`).
//!
//! Every function that decides what to write is pure (text in, text out) and tested as
//! such; the writers around them read, call them, and replace the file atomically.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::credentials::replace_private_file;

/// The name Docker calls the helper by: `docker-credential-<name>`.
pub const DOCKER_HELPER_NAME: &str = "gatehouse";
/// The helper's program name (argv\[0\] basename) that makes this CLI answer as one.
pub const DOCKER_HELPER_PROGRAM: &str = "docker-credential-gatehouse";
/// The registry mapping file in the Gatehouse config dir.
pub const DOCKER_HELPERS_FILE: &str = "docker-helpers.json";

/// Where the other tools keep their configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPaths {
    /// The AWS shared config file.
    pub aws_config: PathBuf,
    /// Docker's `config.json`.
    pub docker_config: PathBuf,
    /// The kubeconfig to write.
    pub kubeconfig: PathBuf,
}

impl ToolPaths {
    /// The paths the environment names (`env` reads a variable; tests pass their own).
    pub fn from_env(env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<Self> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let home = || {
            var("HOME")
                .map(PathBuf::from)
                .context("HOME is not set: cannot find the tools' configuration files")
        };
        let aws_config = match var("AWS_CONFIG_FILE") {
            Some(p) => PathBuf::from(p),
            None => home()?.join(".aws").join("config"),
        };
        let docker_config = match var("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => home()?.join(".docker").join("config.json"),
        };
        let first_kubeconfig = var("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()));
        let kubeconfig = match first_kubeconfig {
            Some(p) => p,
            None => home()?.join(".kube").join("config"),
        };
        Ok(Self {
            aws_config,
            docker_config,
            kubeconfig,
        })
    }
}

/// The file's text, or `None` when it does not exist.
fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces `path` atomically (owner-only, as these files can name secrets' sources).
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a file path", path.display()))?;
    replace_private_file(dir, name, text.as_bytes())
}

// ---------------------------------------------------------------------------------------
// AWS
// ---------------------------------------------------------------------------------------

/// A profile of the AWS shared config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsProfile {
    /// The profile name (`gatehouse-aws-ml`).
    pub name: String,
    /// The `credential_process` command line.
    pub credential_process: String,
    /// `region`.
    pub region: Option<String>,
    /// `endpoint_url`.
    pub endpoint_url: Option<String>,
}

/// One word of a `credential_process` line: quoted in double quotes when it holds a space
/// (the AWS SDKs split the line on spaces outside double quotes).
fn process_word(word: &str) -> String {
    if word.contains(char::is_whitespace) {
        format!("\"{word}\"")
    } else {
        word.to_owned()
    }
}

/// The `credential_process` line that runs `exe` for credentials of one resource.
pub fn credential_process_command(
    exe: &Path,
    connector: &str,
    resource_type: &str,
    resource_id: Option<&str>,
) -> String {
    let exe = exe.to_string_lossy();
    let mut words = vec![
        exe.as_ref(),
        "service-connector",
        "credentials",
        connector,
        "--resource-type",
        resource_type,
    ];
    if let Some(id) = resource_id {
        words.extend(["--resource-id", id]);
    }
    words.extend(["--format", "aws-process"]);
    words
        .iter()
        .map(|w| process_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The section header of profile `name` in the config file: `[default]` or
/// `[profile NAME]`.
fn profile_header(name: &str) -> String {
    if name == "default" {
        "[default]".to_owned()
    } else {
        format!("[profile {name}]")
    }
}

/// The section name of a header line (`[profile  x ]` → `profile x`), if it is one.
fn section_name(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.split_once(']')?.0;
    Some(inner.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t.starts_with(';')
}

/// The lines of `profile`'s section, each ending in `\n`.
fn profile_section(profile: &AwsProfile) -> String {
    let mut section = format!(
        "{}\ncredential_process = {}\n",
        profile_header(&profile.name),
        profile.credential_process
    );
    if let Some(region) = &profile.region {
        section.push_str(&format!("region = {region}\n"));
    }
    if let Some(endpoint) = &profile.endpoint_url {
        section.push_str(&format!("endpoint_url = {endpoint}\n"));
    }
    section
}

/// `text` (an AWS config file) with `profile`'s section replaced, or appended when it has
/// none. Every other line is kept as it was; comment and blank lines at the end of the old
/// section (they usually introduce the next one) are kept too.
pub fn upsert_aws_profile(text: &str, profile: &AwsProfile) -> String {
    let wanted = section_name(&profile_header(&profile.name));
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| section_name(l) == wanted);
    let Some(start) = start else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&profile_section(profile));
        return out;
    };
    let next = lines[start + 1..]
        .iter()
        .position(|l| section_name(l).is_some())
        .map_or(lines.len(), |i| start + 1 + i);
    // Keep the comments and blank lines right before the next section.
    let mut end = next;
    while end > start + 1 && is_comment_or_blank(lines[end - 1]) {
        end -= 1;
    }
    let mut out: String = lines[..start].concat();
    out.push_str(&profile_section(profile));
    out.push_str(&lines[end..].concat());
    out
}

/// Writes `profile` into the AWS config file at `path`.
pub fn write_aws_profile(path: &Path, profile: &AwsProfile) -> anyhow::Result<()> {
    let text = read_optional(path)?.unwrap_or_default();
    write(path, &upsert_aws_profile(&text, profile))
}

// ---------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------

/// The registry host Docker names (`https://123.dkr.ecr.x.amazonaws.com/v2/` →
/// `123.dkr.ecr.x.amazonaws.com`), as `credHelpers` keys and the mapping use it.
pub fn registry_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or_default().to_ascii_lowercase()
}

/// Docker's `config.json` text (`None`: no file yet) with `credHelpers[host]` set to this
/// helper; every other key kept.
pub fn upsert_cred_helper(text: Option<&str>, host: &str) -> anyhow::Result<String> {
    let mut config: Value = match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => serde_json::from_str(text).context("the Docker config is not JSON")?,
        None => Value::Object(serde_json::Map::new()),
    };
    let Some(object) = config.as_object_mut() else {
        anyhow::bail!("the Docker config is not a JSON object");
    };
    let helpers = object
        .entry("credHelpers")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(helpers) = helpers.as_object_mut() else {
        anyhow::bail!("credHelpers in the Docker config is not a JSON object");
    };
    helpers.insert(host.to_owned(), DOCKER_HELPER_NAME.into());
    let mut out = serde_json::to_string_pretty(&config)?;
    out.push('\n');
    Ok(out)
}

/// Registers this helper for `host` in the Docker config at `path`.
pub fn write_cred_helper(path: &Path, host: &str) -> anyhow::Result<()> {
    let text = read_optional(path)?;
    let updated = upsert_cred_helper(text.as_deref(), host)
        .with_context(|| format!("updating {}", path.display()))?;
    write(path, &updated)
}

/// What `login` recorded for a registry: where `get` asks for its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLogin {
    /// The connector.
    pub connector: String,
    /// The resource type (`docker-registry`).
    pub resource_type: String,
    /// The resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// The registries `login` recorded, by host (`docker-helpers.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLogins {
    /// By registry host.
    pub registries: BTreeMap<String, RegistryLogin>,
}

impl RegistryLogins {
    /// The recorded logins in `dir` (none when the file does not exist).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(DOCKER_HELPERS_FILE);
        match read_optional(&path)? {
            Some(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is damaged", path.display())),
            None => Ok(Self::default()),
        }
    }

    /// Saves them in `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        replace_private_file(dir, DOCKER_HELPERS_FILE, text.as_bytes())
    }

    /// The login recorded for the registry Docker names as `server`.
    pub fn find(&self, server: &str) -> Option<&RegistryLogin> {
        self.registries.get(&registry_host(server))
    }
}

/// Creates `dir/docker-credential-gatehouse`, a symbolic link to `exe` (replacing an older
/// link, never a file). Returns the link's path.
#[cfg(unix)]
pub fn install_docker_helper(dir: &Path, exe: &Path) -> anyhow::Result<PathBuf> {
    let link = dir.join(DOCKER_HELPER_PROGRAM);
    match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?
        }
        Ok(_) => anyhow::bail!(
            "{} exists and is not a symbolic link: remove it first",
            link.display()
        ),
        Err(_) => {}
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::os::unix::fs::symlink(exe, &link)
        .with_context(|| format!("creating {}", link.display()))?;
    Ok(link)
}

/// Symbolic links need Unix here.
#[cfg(not(unix))]
pub fn install_docker_helper(dir: &Path, _exe: &Path) -> anyhow::Result<PathBuf> {
    anyhow::bail!(
        "--install-helper is not supported on this system: copy the gatehouse binary to {} as {DOCKER_HELPER_PROGRAM}",
        dir.display()
    )
}

// ---------------------------------------------------------------------------------------
// kubectl
// ---------------------------------------------------------------------------------------

/// A cluster, user and context, all of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeContext {
    /// The name of the cluster, user and context entries.
    pub name: String,
    /// The API server URL.
    pub server: String,
    /// The cluster's CA bundle, base64 (as kubeconfig wants it).
    pub certificate_authority_data: Option<String>,
    /// The exec plugin's command (this CLI's absolute path).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Sets the entry named `name` in the list `key` of `config` (replacing one of that name).
fn upsert_named(
    config: &mut serde_norway::Mapping,
    key: &str,
    name: &str,
    entry: serde_norway::Value,
) -> anyhow::Result<()> {
    use serde_norway::Value as Y;
    let list = config
        .entry(Y::from(key))
        .or_insert_with(|| Y::Sequence(Vec::new()));
    if list.is_null() {
        *list = Y::Sequence(Vec::new());
    }
    let Some(items) = list.as_sequence_mut() else {
        anyhow::bail!("{key} in the kubeconfig is not a list");
    };
    let existing = items
        .iter()
        .position(|item| item.get("name").and_then(Y::as_str) == Some(name));
    match existing {
        Some(i) => items[i] = entry,
        None => items.push(entry),
    }
    Ok(())
}

/// A kubeconfig's text (`None`: no file yet) with `context`'s cluster, user and context
/// set; entries of other names are kept. The current context is set only when there is
/// none.
pub fn upsert_kubeconfig(text: Option<&str>, context: &KubeContext) -> anyhow::Result<String> {
    use serde_norway::Value as Y;
    let mut config: serde_norway::Mapping = match text.filter(|t| !t.trim().is_empty()) {
        Some(text) => {
            serde_norway::from_str(text).context("the kubeconfig is not a YAML mapping")?
        }
        None => serde_norway::Mapping::new(),
    };
    config
        .entry(Y::from("apiVersion"))
        .or_insert_with(|| Y::from("v1"));
    config
        .entry(Y::from("kind"))
        .or_insert_with(|| Y::from("Config"));
    let name = context.name.as_str();
    let mut cluster = serde_norway::Mapping::new();
    cluster.insert(Y::from("server"), Y::from(context.server.as_str()));
    if let Some(ca) = &context.certificate_authority_data {
        cluster.insert(Y::from("certificate-authority-data"), Y::from(ca.as_str()));
    }
    let cluster = serde_norway::to_value(serde_json::json!({"name": name})).map(|mut v| {
        if let Some(m) = v.as_mapping_mut() {
            m.insert(Y::from("cluster"), Y::Mapping(cluster));
        }
        v
    })?;
    upsert_named(&mut config, "clusters", name, cluster)?;
    let user = serde_norway::to_value(serde_json::json!({
        "name": name,
        "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": context.command,
            "args": context.args,
            "interactiveMode": "Never",
            "provideClusterInfo": false,
        }},
    }))?;
    upsert_named(&mut config, "users", name, user)?;
    let ctx = serde_norway::to_value(serde_json::json!({
        "name": name, "context": {"cluster": name, "user": name},
    }))?;
    upsert_named(&mut config, "contexts", name, ctx)?;
    let current = config.get("current-context").and_then(Y::as_str);
    if current.is_none_or(str::is_empty) {
        config.insert(Y::from("current-context"), Y::from(name));
    }
    Ok(serde_norway::to_string(&config)?)
}

/// Writes `context` into the kubeconfig at `path`.
pub fn write_kubeconfig(path: &Path, context: &KubeContext) -> anyhow::Result<()> {
    let text = read_optional(path)?;
    let updated = upsert_kubeconfig(text.as_deref(), context)
        .with_context(|| format!("updating {}", path.display()))?;
    write(path, &updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> AwsProfile {
        AwsProfile {
            name: name.into(),
            credential_process: "/usr/bin/gatehouse service-connector credentials aws-ml \
                                 --resource-type s3-bucket --format aws-process"
                .into(),
            region: Some("eu-west-1".into()),
            endpoint_url: None,
        }
    }

    const CONFIG: &str = "\
# my AWS config
[default]
region = us-east-1

[profile gatehouse-aws-ml]
credential_process = /old/gatehouse old args
region = us-west-2
s3 =
  max_concurrent_requests = 20

# the production account
[profile prod]
role_arn = arn:aws:iam::123456789012:role/admin   ; keep me
source_profile = default
";

    #[test]
    fn the_profile_section_is_replaced_and_every_other_line_kept() {
        let out = upsert_aws_profile(CONFIG, &profile("gatehouse-aws-ml"));
        assert_eq!(
            out,
            "\
# my AWS config
[default]
region = us-east-1

[profile gatehouse-aws-ml]
credential_process = /usr/bin/gatehouse service-connector credentials aws-ml --resource-type s3-bucket --format aws-process
region = eu-west-1

# the production account
[profile prod]
role_arn = arn:aws:iam::123456789012:role/admin   ; keep me
source_profile = default
"
        );
        // Idempotent.
        assert_eq!(upsert_aws_profile(&out, &profile("gatehouse-aws-ml")), out);
    }

    #[test]
    fn a_new_profile_is_appended_after_a_blank_line() {
        let out = upsert_aws_profile("[default]\nregion = us-east-1", &profile("new"));
        assert_eq!(
            out,
            "[default]\nregion = us-east-1\n\n[profile new]\ncredential_process = \
             /usr/bin/gatehouse service-connector credentials aws-ml --resource-type s3-bucket \
             --format aws-process\nregion = eu-west-1\n"
        );
        let empty = upsert_aws_profile("", &profile("default"));
        assert!(
            empty.starts_with("[default]\ncredential_process = "),
            "{empty}"
        );
        // A CRLF file keeps its other lines as they were.
        let crlf = upsert_aws_profile("[profile a]\r\nregion = x\r\n", &profile("b"));
        assert!(
            crlf.starts_with("[profile a]\r\nregion = x\r\n\n[profile b]\n"),
            "{crlf:?}"
        );
    }

    #[test]
    fn the_credential_process_line_quotes_words_with_spaces() {
        let line = credential_process_command(
            Path::new("/opt/my tools/gatehouse"),
            "aws-ml",
            "s3-bucket",
            Some("s3://zenfiles"),
        );
        assert_eq!(
            line,
            "\"/opt/my tools/gatehouse\" service-connector credentials aws-ml --resource-type \
             s3-bucket --resource-id s3://zenfiles --format aws-process"
        );
    }

    #[test]
    fn tool_paths_follow_the_environment() -> anyhow::Result<()> {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let defaults = ToolPaths::from_env(env(&[("HOME", "/home/a")]))?;
        assert_eq!(defaults.aws_config, Path::new("/home/a/.aws/config"));
        assert_eq!(
            defaults.docker_config,
            Path::new("/home/a/.docker/config.json")
        );
        assert_eq!(defaults.kubeconfig, Path::new("/home/a/.kube/config"));
        let set = ToolPaths::from_env(env(&[
            ("AWS_CONFIG_FILE", "/x/aws"),
            ("DOCKER_CONFIG", "/x/docker"),
            ("KUBECONFIG", ":/x/kube1:/x/kube2"),
        ]))?;
        assert_eq!(set.aws_config, Path::new("/x/aws"));
        assert_eq!(set.docker_config, Path::new("/x/docker/config.json"));
        assert_eq!(set.kubeconfig, Path::new("/x/kube1"));
        Ok(())
    }

    #[test]
    fn docker_config_gains_a_cred_helper_and_keeps_everything_else() -> anyhow::Result<()> {
        let before = r#"{"auths": {"ghcr.io": {"auth": "eA=="}}, "credHelpers": {"gcr.io": "gcloud"},
            "currentContext": "desktop"}"#;
        let out = upsert_cred_helper(Some(before), "123.dkr.ecr.eu-west-1.amazonaws.com")?;
        let value: Value = serde_json::from_str(&out)?;
        assert_eq!(
            value,
            serde_json::json!({"auths": {"ghcr.io": {"auth": "eA=="}}, "credHelpers": {"gcr.io": "gcloud",
                "123.dkr.ecr.eu-west-1.amazonaws.com": "gatehouse"}, "currentContext": "desktop"})
        );
        let fresh: Value = serde_json::from_str(&upsert_cred_helper(None, "r.example")?)?;
        assert_eq!(
            fresh,
            serde_json::json!({"credHelpers": {"r.example": "gatehouse"}})
        );
        assert!(upsert_cred_helper(Some("[1]"), "r").is_err());
        Ok(())
    }

    #[test]
    fn registry_hosts_are_normalised() {
        for server in [
            "https://123.dkr.ecr.eu-west-1.amazonaws.com/v2/",
            "123.DKR.ecr.eu-west-1.amazonaws.com",
            " http://123.dkr.ecr.eu-west-1.amazonaws.com ",
        ] {
            assert_eq!(registry_host(server), "123.dkr.ecr.eu-west-1.amazonaws.com");
        }
        assert_eq!(registry_host("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn registry_logins_round_trip_through_the_config_dir() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(RegistryLogins::load(dir.path())?, RegistryLogins::default());
        let mut logins = RegistryLogins::default();
        logins.registries.insert(
            "r.example".into(),
            RegistryLogin {
                connector: "aws-ml".into(),
                resource_type: "docker-registry".into(),
                resource_id: Some("r.example".into()),
            },
        );
        logins.save(dir.path())?;
        let loaded = RegistryLogins::load(dir.path())?;
        assert_eq!(loaded, logins);
        assert_eq!(
            loaded
                .find("https://r.example/v1/")
                .map(|l| l.connector.as_str()),
            Some("aws-ml")
        );
        assert!(loaded.find("other.example").is_none());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn the_helper_link_points_at_the_binary_and_is_replaced_not_a_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let link = install_docker_helper(dir.path(), Path::new("/usr/bin/gatehouse"))?;
        assert_eq!(std::fs::read_link(&link)?, Path::new("/usr/bin/gatehouse"));
        let again = install_docker_helper(dir.path(), Path::new("/opt/gatehouse"))?;
        assert_eq!(std::fs::read_link(&again)?, Path::new("/opt/gatehouse"));
        std::fs::remove_file(&link)?;
        std::fs::write(&link, "mine")?;
        assert!(install_docker_helper(dir.path(), Path::new("/x")).is_err());
        assert_eq!(std::fs::read_to_string(&link)?, "mine");
        Ok(())
    }

    fn kube(name: &str) -> KubeContext {
        KubeContext {
            name: name.into(),
            server: "https://127.0.0.1:6443".into(),
            certificate_authority_data: Some("LS0tLS1CRUdJTg==".into()),
            command: "/usr/bin/gatehouse".into(),
            args: [
                "service-connector",
                "credentials",
                "aws-ml",
                "--resource-type",
                "kubernetes-cluster",
                "--resource-id",
                "ml-cluster",
                "--format",
                "kube-exec",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    #[test]
    fn a_kubeconfig_gains_cluster_user_and_context_and_keeps_the_rest() -> anyhow::Result<()> {
        let before = "\
apiVersion: v1
kind: Config
clusters:
- name: minikube
  cluster:
    server: https://192.0.2.1:8443
- name: gatehouse-aws-ml
  cluster:
    server: https://old
users:
- name: minikube
  user:
    token: abc
contexts:
- name: minikube
  context:
    cluster: minikube
    user: minikube
current-context: minikube
preferences: {}
";
        let out = upsert_kubeconfig(Some(before), &kube("gatehouse-aws-ml"))?;
        let value: serde_json::Value = serde_norway::from_str(&out)?;
        assert_eq!(value["current-context"], "minikube");
        assert_eq!(value["preferences"], serde_json::json!({}));
        let names = |key: &str| -> Vec<String> {
            value[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(names("clusters"), ["minikube", "gatehouse-aws-ml"]);
        assert_eq!(names("users"), ["minikube", "gatehouse-aws-ml"]);
        assert_eq!(names("contexts"), ["minikube", "gatehouse-aws-ml"]);
        assert_eq!(value["users"][0]["user"]["token"], "abc");
        assert_eq!(
            value["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            value["clusters"][1]["cluster"]["certificate-authority-data"],
            "LS0tLS1CRUdJTg=="
        );
        let exec = &value["users"][1]["user"]["exec"];
        assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(exec["command"], "/usr/bin/gatehouse");
        assert_eq!(exec["interactiveMode"], "Never");
        assert_eq!(exec["args"][8], "kube-exec");
        assert_eq!(
            value["contexts"][1]["context"],
            serde_json::json!({"cluster": "gatehouse-aws-ml", "user": "gatehouse-aws-ml"})
        );
        // Idempotent.
        assert_eq!(
            upsert_kubeconfig(Some(&out), &kube("gatehouse-aws-ml"))?,
            out
        );
        Ok(())
    }

    #[test]
    fn a_new_kubeconfig_uses_the_new_context() -> anyhow::Result<()> {
        let out = upsert_kubeconfig(None, &kube("gh"))?;
        let value: serde_json::Value = serde_norway::from_str(&out)?;
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Config");
        assert_eq!(value["current-context"], "gh");
        Ok(())
    }
}
