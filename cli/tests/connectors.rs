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
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let request = Seen {
                    method,
                    target,
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

fn issued(resource_type: &str, resource_id: Option<&str>, credentials: Value) -> Value {
    json!({"lease_id": "0193a1b2-0000-7e5f-8a9b-00000000l0a5", "connector_id": "c1",
        "connector_type": "aws", "auth_method": "iam-role", "resource_type": resource_type,
        "resource_id": resource_id, "expires_at": "2026-12-03T12:00:00Z", "revocable": false,
        "credentials": credentials})
}

/// The stand-in of the connector API.
fn connector_api() -> Gateway {
    Gateway::start(Box::new(|req: &Seen| {
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
                    "kubernetes-cluster" => json!({"server": "https://127.0.0.1:6443",
                        "certificate_authority_data": "LS0tLS1CRUdJTg==", "token": "k8s-token"}),
                    _ => {
                        json!({"aws_access_key_id": "ASIAEXAMPLE", "aws_secret_access_key": SECRET,
                        "aws_session_token": "FwoGZXIvYXdzEXAMPLE", "region": "eu-west-1",
                        "endpoint_url": "http://127.0.0.1:5000"})
                    }
                };
                (200, issued(kind, id, credentials))
            }
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
    }))
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
    let process: Value =
        serde_json::from_slice(&run(&["--format", "aws-process"]).stdout).expect("json");
    assert_eq!(
        process,
        json!({"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": SECRET,
            "SessionToken": "FwoGZXIvYXdzEXAMPLE", "Expiration": "2026-12-03T12:00:00Z"})
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
        "https://127.0.0.1:6443"
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
