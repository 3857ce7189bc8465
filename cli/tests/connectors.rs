//! The connector commands of the `gatehouse` binary, run as a person or a tool runs them,
//! against a **local HTTP stand-in** of the gateway's connector API (issue 12).
//!
//! The stand-in answers the documented JSON of `/api/v1/service_connectors`, `/leases`
//! and `/components` while the real API lands on main; it records every request so that a
//! test can check what the CLI sent. The lead replaces these with end-to-end tests against
//! `gatehouse dev` once the broker is merged; what is checked here that does not depend on
//! the server (files written for the AWS CLI, Docker and kubectl, secrets kept off the
//! command line and out of the output, the helper protocol) stays true then.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn route(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.target.split('?').next().unwrap_or_default()
        )
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

type Answer = dyn Fn(&Seen) -> (u16, Value) + Send + Sync;

/// The stand-in: one thread, one request per connection, answers from `answer`.
struct Gateway {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Gateway {
    fn start(answer: Box<Answer>) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                let mut length = 0;
                let mut headers = Vec::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let request = Seen {
                    method,
                    target,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let (status, value) = answer(&request);
                if let Ok(mut log) = log.lock() {
                    log.push(request);
                }
                let text = if status == 204 {
                    String::new()
                } else {
                    value.to_string()
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Gateway { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn routes(&self) -> Vec<String> {
        self.seen().iter().map(Seen::route).collect()
    }
}

/// A person's machine: a Gatehouse login saved for `url`, and empty tool config files.
struct Machine {
    dir: tempfile::TempDir,
    url: String,
}

impl Machine {
    fn new(url: &str) -> Machine {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("gatehouse");
        std::fs::create_dir_all(&config).expect("config dir");
        let expires = chrono::Utc::now() + chrono::Duration::hours(1);
        let session = json!({"url": url, "access_token": "test-token", "expires_at": expires,
            "principal": {"name": "alice", "kind": "user"}});
        let file = config.join("credentials.json");
        std::fs::write(&file, session.to_string()).expect("session");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        Machine {
            dir,
            url: url.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `program` with this machine's environment (and nothing of the real user's).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("GATEHOUSE_CONFIG_DIR", self.path("gatehouse"))
            .env("GATEHOUSE_URL", &self.url)
            .env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("KUBECONFIG", self.path("kubeconfig"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(Path::new(env!("CARGO_BIN_EXE_gatehouse")))
            .args(args)
            .output()
            .expect("run gatehouse")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(Path::new(env!("CARGO_BIN_EXE_gatehouse")))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn aws_type() -> Value {
    json!({
        "connector_type": "aws", "name": "AWS", "description": "Amazon Web Services",
        "auth_methods": [{
            "auth_method": "iam-role", "name": "IAM role", "description": "assume a role",
            "config_schema": {"type": "object", "properties": {
                "region": {"type": "string", "description": "AWS region"},
                "role_arn": {"type": "string", "description": "the role"},
                "max_attempts": {"type": "integer", "description": "retries"}},
                "required": ["region", "role_arn"]},
            "secrets": [{"name": "aws_access_key_id", "required": true, "description": "key id"},
                {"name": "aws_secret_access_key", "required": true, "description": "secret"}],
            "implicit": false, "long_lived": false, "revocable": false,
            "min_expiration_seconds": 900, "max_expiration_seconds": 43200,
            "default_expiration_seconds": 3600}],
        "resource_types": [
            {"resource_type": "s3-bucket", "name": "S3 bucket", "description": "a bucket",
             "auth_methods": ["iam-role"], "supports_instances": true,
             "id_forms": ["s3://{bucket}"], "canonical_form": "s3://{bucket}"},
            {"resource_type": "docker-registry", "name": "ECR", "description": "a registry",
             "auth_methods": ["iam-role"], "supports_instances": false, "id_forms": []},
            {"resource_type": "kubernetes-cluster", "name": "EKS", "description": "a cluster",
             "auth_methods": ["iam-role"], "supports_instances": true, "id_forms": ["{name}"]}]
    })
}

fn connector(name: &str, body: &Value) -> Value {
    let secrets: serde_json::Map<String, Value> = body["secrets"]
        .as_object()
        .map(|s| s.keys().map(|k| (k.clone(), json!("[HIDDEN]"))).collect())
        .unwrap_or_default();
    json!({"id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "name": name, "connector_type": "aws",
        "auth_method": body["auth_method"].as_str().unwrap_or("iam-role"),
        "resource_types": body["resource_types"].clone(), "resource_id": body["resource_id"].clone(),
        "configuration": or_empty(&body["configuration"]), "secrets": secrets,
        "labels": or_empty(&body["labels"]),
        "description": "", "expiration_seconds": null, "expires_at": null,
        "issues_long_lived_credentials": false, "implicit": false, "owner": "u1", "grants": [],
        "components": [], "created": "2026-12-03T11:00:00Z", "updated": "2026-12-03T11:00:00Z"})
}

fn or_empty(value: &Value) -> Value {
    if value.is_null() {
        json!({})
    } else {
        value.clone()
    }
}

/// An expiry an hour from now, as the server sends it (tools refuse expired answers).
fn in_an_hour() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn issued(resource_type: &str, resource_id: Option<&str>, credentials: Value) -> Value {
    json!({"lease_id": "0193a1b2-0000-7e5f-8a9b-00000000l0a5", "connector_id": "c1",
        "connector_type": "aws", "auth_method": "iam-role", "resource_type": resource_type,
        "resource_id": resource_id, "expires_at": in_an_hour(), "revocable": false,
        "credentials": credentials})
}

/// The stand-in of the connector API.
fn connector_api() -> Gateway {
    connector_api_for(None)
}

/// The stand-in, naming `cluster` (server URL, CA bundle in base64) in credentials for
/// kubernetes-cluster; without one it is the cluster itself.
fn connector_api_for(cluster: Option<(String, String)>) -> Gateway {
    let me: Arc<std::sync::OnceLock<String>> = Arc::new(std::sync::OnceLock::new());
    let own_url = me.clone();
    let api = Gateway::start(Box::new(move |req: &Seen| {
        let body = req.json();
        match req.route().as_str() {
            "GET /api/v1/service_connector_types/aws" => (200, aws_type()),
            "POST /api/v1/service_connectors" => {
                (201, connector(body["name"].as_str().unwrap_or("x"), &body))
            }
            "GET /api/v1/service_connectors" => (
                200,
                json!({"index": 1, "max_size": 20, "total_pages": 1, "total": 1,
                    "items": [connector("aws-ml", &json!({"labels": {"team": "ml"}}))]}),
            ),
            "POST /api/v1/service_connectors/aws-ml/credentials" => {
                let kind = body["resource_type"].as_str().unwrap_or_default();
                let id = body["resource_id"].as_str();
                let credentials = match kind {
                    "docker-registry" => json!({"username": "AWS", "password": "registry-pw",
                        "registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com"}),
                    // The stand-in is the cluster too (plain HTTP, so no CA).
                    "kubernetes-cluster" => match &cluster {
                        Some((server, ca)) => json!({"token": "k8s-token", "server": server,
                            "certificate_authority_data": ca}),
                        None => json!({"token": "k8s-token",
                            "server": own_url.get().cloned().unwrap_or_default()}),
                    },
                    _ => {
                        json!({"aws_access_key_id": "ASIAEXAMPLE", "aws_secret_access_key": SECRET,
                        "aws_session_token": "FwoGZXIvYXdzEXAMPLE", "region": "eu-west-1",
                        "endpoint_url": "http://127.0.0.1:5000"})
                    }
                };
                (200, issued(kind, id, credentials))
            }
            // The cluster's API server, to kubectl.
            "GET /version" => (
                if req.header("authorization") == Some("Bearer k8s-token") {
                    200
                } else {
                    401
                },
                json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}),
            ),
            "POST /api/v1/leases/l-1/revoke" => (
                409,
                json!({"error": "conflict", "code": "not_revocable", "request_id": "r1",
                    "message": "an STS session cannot be revoked; it expires at 2026-12-03T12:00:00Z"}),
            ),
            "POST /api/v1/components" => (
                201,
                json!({"id": "k1", "name": body["name"], "type": body["type"], "flavor": body["flavor"],
                    "configuration": body["configuration"], "owner": "u1", "connector": null,
                    "created": "2026-12-03T11:00:00Z", "updated": "2026-12-03T11:00:00Z"}),
            ),
            _ => (
                404,
                json!({"error": "not_found", "message": format!("no route {}", req.route()),
                    "request_id": "r0"}),
            ),
        }
    }));
    let _ = me.set(api.url.clone());
    api
}

#[test]
fn a_secret_typed_on_the_command_line_is_refused_and_never_echoed() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let secret_arg = format!("aws_secret_access_key={SECRET}");
    for output_args in [&[][..], &["-o", "json"]] {
        let mut args = vec![
            "service-connector",
            "register",
            "aws-ml",
            "--type",
            "aws",
            "--auth-method",
            "iam-role",
            "--secret",
            &secret_arg,
        ];
        args.extend_from_slice(output_args);
        let out = machine.run(&args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = text(&out.stderr);
        assert!(!stderr.contains(SECRET) && !text(&out.stdout).contains(SECRET));
        assert!(stderr.contains("NAME=@FILE"), "{stderr}");
    }
    assert!(
        !api.routes()
            .contains(&"POST /api/v1/service_connectors".to_owned()),
        "nothing was registered"
    );
}

#[test]
fn register_reads_secrets_from_a_file_and_stdin_types_config_and_hides_them() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let key_file = machine.path("key-id");
    std::fs::write(&key_file, "AKIAEXAMPLE\n").expect("key file");
    let key_arg = format!("aws_access_key_id=@{}", key_file.display());
    let out = machine.run_with_stdin(
        &[
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
            "s3://zenfiles",
            "--config",
            "region=us-east-1",
            "--config",
            "role_arn=arn:aws:iam::123456789012:role/ml",
            "--config",
            "max_attempts=5",
            "--label",
            "team=ml",
            "--secret",
            &key_arg,
            "--secret",
            "aws_secret_access_key=@-",
            "--no-verify",
        ],
        &format!("{SECRET}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let register = api
        .seen()
        .into_iter()
        .find(|r| r.route() == "POST /api/v1/service_connectors")
        .expect("registered");
    let body = register.json();
    assert_eq!(
        body["secrets"],
        json!({"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": SECRET})
    );
    assert_eq!(
        body["configuration"],
        json!({"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/ml",
            "max_attempts": 5})
    );
    assert_eq!(body["labels"], json!({"team": "ml"}));
    assert_eq!(body["resource_types"], json!(["s3-bucket"]));
    assert_eq!(body["resource_id"], "s3://zenfiles");
    assert_eq!(body["verify"], false);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("SECRET AWS_SECRET_ACCESS_KEY  [HIDDEN]"),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !text(&out.stderr).contains(SECRET));
}

#[test]
fn without_a_terminal_a_missing_secret_or_a_guided_registration_fails_clearly() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let out = machine.run(&[
        "service-connector",
        "register",
        "aws-ml",
        "--type",
        "aws",
        "--auth-method",
        "iam-role",
        "--config",
        "region=us-east-1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("aws_access_key_id, aws_secret_access_key") && stderr.contains("@FILE"),
        "{stderr}"
    );
    let out = machine.run(&[
        "service-connector",
        "register",
        "aws-ml",
        "--type",
        "aws",
        "-i",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("needs a terminal"), "{out:?}");
    assert!(
        !api.routes()
            .contains(&"POST /api/v1/service_connectors".to_owned())
    );
}

#[test]
fn credentials_print_for_each_tool_and_the_table_shows_no_value() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let base = [
        "service-connector",
        "credentials",
        "aws-ml",
        "--resource-type",
        "s3-bucket",
        "--resource-id",
        "s3://zenfiles",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = machine.run(&args);
        assert!(out.status.success(), "{extra:?}: {out:?}");
        out
    };
    let mut process: Value =
        serde_json::from_slice(&run(&["--format", "aws-process"]).stdout).expect("json");
    let expiration = process["Expiration"].take();
    let expiration = expiration.as_str().unwrap_or_default();
    assert!(
        expiration.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(expiration).is_ok(),
        "{expiration}"
    );
    assert_eq!(
        process,
        json!({"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": SECRET,
            "SessionToken": "FwoGZXIvYXdzEXAMPLE", "Expiration": null})
    );
    // The env format is what a shell evaluates.
    let env = text(&run(&["--format", "env"]).stdout);
    let shell = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{env}\nprintf '%s|%s' \"$AWS_SECRET_ACCESS_KEY\" \"$AWS_REGION\""
        ))
        .output()
        .expect("sh");
    assert_eq!(text(&shell.stdout), format!("{SECRET}|eu-west-1"));
    let json: Value = serde_json::from_slice(&run(&["-o", "json"]).stdout).expect("json");
    assert_eq!(json["credentials"]["aws_secret_access_key"], SECRET);
    let table = run(&[]);
    let stdout = text(&table.stdout);
    assert!(
        !stdout.contains(SECRET) && !stdout.contains("ASIAEXAMPLE"),
        "{stdout}"
    );
    assert!(stdout.contains("aws_secret_access_key"), "{stdout}");
    assert!(text(&table.stderr).contains("--format env|aws-process"));
    // The request asked for that resource.
    let asked = api
        .seen()
        .into_iter()
        .find(|r| r.route() == "POST /api/v1/service_connectors/aws-ml/credentials")
        .expect("asked");
    assert_eq!(
        asked.json(),
        json!({"resource_type": "s3-bucket", "resource_id": "s3://zenfiles"})
    );
    let both = machine.run(&[
        "service-connector",
        "credentials",
        "aws-ml",
        "--resource-type",
        "s3-bucket",
        "--format",
        "env",
        "-o",
        "json",
    ]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn login_writes_an_aws_profile_whose_credential_process_works() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let before = "# mine\n[default]\nregion = us-east-1\n\n[profile prod]\nrole_arn = x\n";
    std::fs::write(machine.path("aws-config"), before).expect("aws config");
    let out = machine.run(&[
        "service-connector",
        "login",
        "aws-ml",
        "--resource-type",
        "s3-bucket",
        "--resource-id",
        "s3://zenfiles",
    ]);
    assert!(out.status.success(), "{out:?}");
    let config = std::fs::read_to_string(machine.path("aws-config")).expect("written");
    assert!(
        config.starts_with(before),
        "other profiles kept byte for byte:\n{config}"
    );
    let section = &config[before.len()..];
    assert!(
        section.starts_with("\n[profile gatehouse-aws-ml]\n"),
        "{config}"
    );
    assert!(section.contains("region = eu-west-1\n"), "{config}");
    assert!(
        section.contains("endpoint_url = http://127.0.0.1:5000\n"),
        "{config}"
    );
    let line = section
        .lines()
        .find_map(|l| l.strip_prefix("credential_process = "))
        .expect("credential_process");
    assert!(
        line.ends_with(
            "service-connector credentials aws-ml --resource-type s3-bucket --resource-id \
             s3://zenfiles --format aws-process"
        ),
        "{line}"
    );
    // Run it as the AWS SDKs would (split on spaces), in the user's environment.
    let words: Vec<&str> = line.split(' ').collect();
    let process = machine
        .command(Path::new(words[0]))
        .args(&words[1..])
        .output()
        .expect("credential process");
    assert!(process.status.success(), "{process:?}");
    let answer: Value = serde_json::from_slice(&process.stdout).expect("json");
    assert_eq!(answer["Version"], 1);
    assert_eq!(answer["SecretAccessKey"], SECRET);
    assert!(!text(&out.stdout).contains(SECRET));
}

#[test]
fn login_registers_the_docker_helper_which_answers_docker() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    std::fs::create_dir_all(machine.path("docker")).expect("docker dir");
    std::fs::write(
        machine.path("docker/config.json"),
        r#"{"auths": {"ghcr.io": {}}, "credHelpers": {"gcr.io": "gcloud"}}"#,
    )
    .expect("docker config");
    let bin = machine.path("bin");
    let out = machine.run(&[
        "service-connector",
        "login",
        "aws-ml",
        "--resource-type",
        "docker-registry",
        "--install-helper",
        bin.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(machine.path("docker/config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(
        config,
        json!({"auths": {"ghcr.io": {}}, "credHelpers": {"gcr.io": "gcloud",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com": "gatehouse"}})
    );
    let helper = bin.join("docker-credential-gatehouse");
    let docker = |verb: &str, stdin: &str| {
        let mut child = machine
            .command(&helper)
            .arg(verb)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("helper");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin");
        child.wait_with_output().expect("helper output")
    };
    let got = docker(
        "get",
        "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com\n",
    );
    assert!(got.status.success(), "{got:?}");
    let answer: Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(
        answer,
        json!({"ServerURL": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "Username": "AWS", "Secret": "registry-pw"})
    );
    let unknown = docker("get", "ghcr.io");
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        text(&unknown.stdout).trim(),
        "credentials not found in native keychain"
    );
    let listed: Value = serde_json::from_slice(&docker("list", "").stdout).expect("list");
    assert_eq!(
        listed,
        json!({"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "aws-ml"})
    );
    assert_eq!(
        docker("store", r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#)
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn login_writes_a_kubeconfig_context_with_an_exec_plugin() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let out = machine.run(&[
        "service-connector",
        "login",
        "aws-ml",
        "--resource-type",
        "kubernetes-cluster",
        "--resource-id",
        "ml-cluster",
        "--profile",
        "ml",
    ]);
    assert!(out.status.success(), "{out:?}");
    let kubeconfig: Value = serde_norway::from_str(
        &std::fs::read_to_string(machine.path("kubeconfig")).expect("kubeconfig"),
    )
    .expect("yaml");
    assert_eq!(kubeconfig["current-context"], "ml");
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        api.url.as_str()
    );
    let exec = &kubeconfig["users"][0]["user"]["exec"];
    let command = exec["command"].as_str().expect("command");
    let args: Vec<&str> = exec["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "service-connector",
            "credentials",
            "aws-ml",
            "--resource-type",
            "kubernetes-cluster",
            "--resource-id",
            "ml-cluster",
            "--format",
            "kube-exec"
        ]
    );
    // What kubectl runs answers an ExecCredential.
    let plugin = machine
        .command(Path::new(command))
        .args(&args)
        .output()
        .expect("plugin");
    let credential: Value = serde_json::from_slice(&plugin.stdout).expect("json");
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(credential["status"]["token"], "k8s-token");
}

#[test]
fn list_filters_by_label_and_a_refused_revoke_says_why() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let out = machine.run(&[
        "service-connector",
        "list",
        "--label",
        "team=ml",
        "--type",
        "aws",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("aws-ml"));
    let listed = api
        .seen()
        .into_iter()
        .find(|r| r.route() == "GET /api/v1/service_connectors")
        .expect("listed");
    assert_eq!(
        listed.target,
        "/api/v1/service_connectors?connector_type=aws&label=team%3Aml"
    );
    let revoke = machine.run(&["lease", "revoke", "l-1"]);
    assert_eq!(revoke.status.code(), Some(1));
    assert!(
        text(&revoke.stderr).contains("cannot be revoked; it expires at"),
        "{revoke:?}"
    );
    let json = machine.run(&["lease", "revoke", "l-1", "-o", "json"]);
    let error: Value = serde_json::from_slice(&json.stderr).expect("json error");
    assert_eq!(error["code"], "not_revocable");
}

#[test]
fn an_artifact_store_registers_with_its_path_sugar() {
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let out = machine.run(&[
        "artifact-store",
        "register",
        "zenfiles",
        "--flavor",
        "s3",
        "--path",
        "s3://zenfiles",
        "--connector",
        "aws-ml",
    ]);
    assert!(out.status.success(), "{out:?}");
    let body = api
        .seen()
        .into_iter()
        .find(|r| r.route() == "POST /api/v1/components")
        .expect("registered")
        .json();
    assert_eq!(
        body,
        json!({"name": "zenfiles", "type": "artifact_store", "flavor": "s3",
            "configuration": {"path": "s3://zenfiles"}, "connector": "aws-ml"})
    );
    let wrong = machine.run(&["artifact-store", "register", "x", "--flavor", "gcs"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong.stderr).contains("it has s3"));
}

/// A tool on PATH, or `None` (the test then says it was skipped, on stderr). Set
/// `GATEHOUSE_TEST_REQUIRE_TOOLS=1` to make a missing tool a failure.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("GATEHOUSE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{name} is not on PATH"
        );
        eprintln!("skipped: {name} is not on PATH");
    }
    found
}

/// The real AWS SDK for Python (botocore, as the AWS CLI uses it) reads the profile
/// `login` wrote, runs its credential_process and accepts the answer.
#[test]
fn botocore_gets_credentials_through_the_written_profile() {
    let Some(python) = tool("python3") else {
        return;
    };
    let check = Command::new(&python)
        .args(["-c", "import botocore"])
        .output()
        .expect("python3");
    if !check.status.success() {
        assert!(std::env::var("GATEHOUSE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"));
        eprintln!("skipped: python3 has no botocore");
        return;
    }
    let api = connector_api();
    let machine = Machine::new(&api.url);
    let out = machine.run(&[
        "service-connector",
        "login",
        "aws-ml",
        "--resource-type",
        "s3-bucket",
        "--profile",
        "ml",
    ]);
    assert!(out.status.success(), "{out:?}");
    let script = "import botocore.session\n\
        s = botocore.session.Session(profile='ml')\n\
        c = s.get_credentials().get_frozen_credentials()\n\
        print(c.access_key, c.secret_key, c.token, s.get_config_variable('region'))\n";
    // The user's environment (python may be a pyenv shim that needs HOME), with this
    // machine's Gatehouse and AWS files and no AWS credentials of the user's.
    let sdk = Command::new(&python)
        .args(["-c", script])
        .env("AWS_CONFIG_FILE", machine.path("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            machine.path("no-credentials"),
        )
        .env("GATEHOUSE_CONFIG_DIR", machine.path("gatehouse"))
        .env("GATEHOUSE_URL", &machine.url)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("GATEHOUSE_API_KEY")
        .output()
        .expect("botocore");
    assert!(sdk.status.success(), "{sdk:?}");
    assert_eq!(
        text(&sdk.stdout).trim(),
        format!("ASIAEXAMPLE {SECRET} FwoGZXIvYXdzEXAMPLE eu-west-1")
    );
}

/// The Authorization headers a server saw.
type Headers = Arc<Mutex<Vec<String>>>;

/// A cluster's API server for kubectl: HTTPS (kubectl sends no bearer token over plain
/// HTTP) with a self-signed certificate made by `openssl`, answering `/version` to the
/// bearer `k8s-token` only. Returns its URL, its certificate in base64 (kubeconfig's
/// `certificate-authority-data`) and the Authorization headers it saw.
fn tls_cluster(dir: &Path) -> Option<(String, String, Headers)> {
    use rustls::pki_types::pem::PemObject as _;
    let openssl = tool("openssl")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let b64 = Command::new(&openssl)
        .args(["base64", "-A", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl base64");
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut reader = BufReader::new(&mut tls);
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_owned();
                }
            }
            if let Ok(mut log) = log.lock() {
                log.push(auth.clone());
            }
            let (status, body) = if auth == "Bearer k8s-token" {
                (
                    "200 OK",
                    r#"{"major":"1","minor":"32","gitVersion":"v1.32.0"}"#,
                )
            } else {
                ("401 Unauthorized", r#"{"kind":"Status","code":401}"#)
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    Some((url, text(&b64.stdout).trim().to_owned(), seen))
}

/// Real kubectl trusts the cluster through the CA `login` wrote, runs the exec plugin and
/// sends its token.
#[test]
fn kubectl_authenticates_with_the_exec_plugin() {
    let Some(kubectl) = tool("kubectl") else {
        return;
    };
    let certs = tempfile::tempdir().expect("tempdir");
    let Some((server, ca, seen)) = tls_cluster(certs.path()) else {
        return;
    };
    let api = connector_api_for(Some((server, ca)));
    let machine = Machine::new(&api.url);
    let out = machine.run(&[
        "service-connector",
        "login",
        "aws-ml",
        "--resource-type",
        "kubernetes-cluster",
        "--resource-id",
        "ml-cluster",
    ]);
    assert!(out.status.success(), "{out:?}");
    let version = machine
        .command(&kubectl)
        .args(["--context", "gatehouse-aws-ml", "get", "--raw", "/version"])
        .output()
        .expect("kubectl");
    assert!(version.status.success(), "{version:?}");
    assert!(text(&version.stdout).contains("v1.32.0"), "{version:?}");
    let auth = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        !auth.is_empty() && auth.iter().all(|a| a == "Bearer k8s-token"),
        "{auth:?}"
    );
}
