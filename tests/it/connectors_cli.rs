//! The connector CLI end to end (issue 12): the `gatehouse` binary run as a person or a CI
//! job runs it (its own HOME, config dir and tool files; a saved login or
//! `GATEHOUSE_API_KEY`; nothing else of the test's environment), against the real server
//! (`TestApp`: Postgres, nats-server) in front of moto. What the CLI writes for other tools
//! is read back by those tools where they are installed (kubectl, `sh`, the AWS SDK for
//! Rust), else parsed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use gatehouse_e2e::{
    ADMIN_PASSWORD, TestApp, run_cli_env, run_program_env, workspace_bin, workspace_example,
};
use gatehouse_testsupport::aws::{AccessKey, Admin, REGION, s3_with_issued};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
/// moto's ECR registry for [`ACCOUNT`] in [`REGION`].
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A machine the CLI runs on: its own HOME, Gatehouse config dir, AWS, Docker and kubectl
/// files, and nothing of the test process's environment.
struct Machine {
    dir: tempfile::TempDir,
    url: String,
    api_key: Option<String>,
}

impl Machine {
    fn new(app: &TestApp, api_key: Option<&str>) -> anyhow::Result<Machine> {
        Ok(Machine {
            dir: tempfile::tempdir()?,
            url: app.url.clone(),
            api_key: api_key.map(str::to_owned),
        })
    }

    /// A person's machine, logged in as `user` through `gatehouse login`.
    async fn person(app: &TestApp, user: &str, password: &str) -> anyhow::Result<Machine> {
        let machine = Machine::new(app, None)?;
        machine
            .ok_with(
                &["login", "--username", user, "--password-stdin"],
                Some(&format!("{password}\n")),
                &[],
            )
            .await?;
        Ok(machine)
    }

    /// The administrator's machine.
    async fn admin(app: &TestApp) -> anyhow::Result<Machine> {
        Machine::person(app, "admin", ADMIN_PASSWORD).await
    }

    /// A CI job's: `GATEHOUSE_API_KEY` and no saved login.
    fn ci(app: &TestApp, key: &str) -> anyhow::Result<Machine> {
        Machine::new(app, Some(key))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path_text(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// The whole environment of a program run on this machine.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "HOME".to_owned(),
                self.dir.path().to_string_lossy().into_owned(),
            ),
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            (
                "GATEHOUSE_CONFIG_DIR".to_owned(),
                self.path_text("gatehouse"),
            ),
            ("GATEHOUSE_URL".to_owned(), self.url.clone()),
            ("AWS_CONFIG_FILE".to_owned(), self.path_text("aws-config")),
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
                self.path_text("aws-credentials"),
            ),
            ("DOCKER_CONFIG".to_owned(), self.path_text("docker")),
            ("KUBECONFIG".to_owned(), self.path_text("kubeconfig")),
        ];
        if let Some(key) = &self.api_key {
            env.push(("GATEHOUSE_API_KEY".to_owned(), key.clone()));
        }
        env
    }

    /// This machine's environment with `extra` on top.
    fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    /// Runs the CLI; (exit code, stdout, stderr).
    async fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(i32, String, String)> {
        let env = self.env_with(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli_env(args, stdin, &env, TIMEOUT).await
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
        self.run_with(args, None, &[]).await
    }

    /// Runs the CLI, which must succeed; its stdout.
    async fn ok_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let (code, out, err) = self.run_with(args, stdin, extra).await?;
        anyhow::ensure!(code == 0, "gatehouse {args:?} exited {code}:\n{out}{err}");
        Ok(out)
    }

    async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ok_with(args, None, &[]).await
    }

    /// Runs the CLI with `-o json`, which must succeed; its answer.
    async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.ok(&args).await?;
        serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
    }

    /// Runs the CLI, which must fail; (exit code, stderr). Nothing goes to stdout then.
    async fn fails(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let (code, out, err) = self.run(args).await?;
        anyhow::ensure!(code != 0, "gatehouse {args:?} succeeded:\n{out}{err}");
        anyhow::ensure!(
            out.is_empty(),
            "gatehouse {args:?} failed but printed {out}"
        );
        Ok((code, err))
    }

    /// Runs another program on this machine.
    async fn program(
        &self,
        program: &Path,
        args: &[&str],
        stdin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(i32, String, String)> {
        let env = self.env_with(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_program_env(program, args, stdin, &env, TIMEOUT).await
    }
}

/// A policy of several `Allow` statements, each (actions, resources).
fn allow_all_of(statements: &[(&[&str], &[&str])]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": statements
            .iter()
            .map(|(actions, resources)| json!({"Effect": "Allow", "Action": actions, "Resource": resources}))
            .collect::<Vec<_>>(),
    })
}

/// An enforcing moto with the buckets `team-data` and `other-data`, a user `connector` who
/// may assume the role `writer` (and ask who it is), and `writer`, which may use
/// `team-data` only and list the buckets. Returns the admin, the user's keys, the role ARN.
async fn aws_with_role() -> (Admin, AccessKey, String) {
    let admin = Admin::enforcing().await;
    admin.create_bucket("team-data").await;
    admin.create_bucket("other-data").await;
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/writer");
    let keys = admin
        .create_user(
            "connector",
            allow_all_of(&[
                (&["sts:AssumeRole"], &[&role_arn]),
                (&["sts:GetCallerIdentity", "sts:GetSessionToken"], &["*"]),
            ]),
        )
        .await;
    let role = admin
        .create_role(
            "writer",
            &format!("arn:aws:iam::{ACCOUNT}:user/connector"),
            allow_all_of(&[
                (
                    &["s3:*"],
                    &["arn:aws:s3:::team-data", "arn:aws:s3:::team-data/*"],
                ),
                (&["s3:ListAllMyBuckets"], &["*"]),
            ]),
        )
        .await;
    assert_eq!(role, role_arn);
    (admin, keys, role)
}

/// Registers an `iam-role` connector `name` for S3 through the REST API (set-up).
async fn register_iam_role(
    app: &TestApp,
    admin: &str,
    name: &str,
    aws: &Admin,
    keys: &AccessKey,
    role: &str,
) -> anyhow::Result<()> {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(admin),
            Some(json!({
                "name": name, "connector_type": "aws", "auth_method": "iam-role",
                "resource_types": ["s3-bucket"],
                "configuration": {"region": REGION, "role_arn": role, "endpoint_url": aws.url()},
                "secrets": {"aws_access_key_id": keys.id, "aws_secret_access_key": keys.secret},
            })),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "registering {name}: {status} {body}"
    );
    Ok(())
}

/// Registers a `session-token` connector `name` on an unenforced moto (any keys work).
async fn register_session_token(
    app: &TestApp,
    admin: &str,
    name: &str,
    aws: &Admin,
) -> anyhow::Result<()> {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(admin),
            Some(json!({
                "name": name, "connector_type": "aws", "auth_method": "session-token",
                "configuration": {"region": REGION, "endpoint_url": aws.url()},
                "secrets": {"aws_access_key_id": "AKIAANY0000000000001", "aws_secret_access_key": "any-secret"},
            })),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "registering {name}: {status} {body}"
    );
    Ok(())
}

/// The words of `args`, borrowed.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// An object of the admin's view of S3 exists.
async fn object_exists(aws: &Admin, bucket: &str, key: &str) -> bool {
    aws.s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn a_person_registers_a_connector_with_secrets_from_a_file_and_stdin_and_never_sees_them()
-> anyhow::Result<()> {
    let (aws, keys, role) = aws_with_role().await;
    let app = TestApp::spawn().await?;
    let me = Machine::admin(&app).await?;
    std::fs::write(me.path("key-id"), format!("{}\n", keys.id))?;
    let key_arg = format!("aws_access_key_id=@{}", me.path_text("key-id"));
    let role_arg = format!("role_arn={role}");
    let endpoint_arg = format!("endpoint_url={}", aws.url());
    let register = |secret: String| {
        vec![
            "service-connector".to_owned(),
            "register".into(),
            "aws-s3".into(),
            "--type".into(),
            "aws".into(),
            "--auth-method".into(),
            "iam-role".into(),
            "--resource-type".into(),
            "s3-bucket".into(),
            "--config".into(),
            format!("region={REGION}"),
            "--config".into(),
            role_arg.clone(),
            "--config".into(),
            endpoint_arg.clone(),
            "--label".into(),
            "team=ml".into(),
            "--secret".into(),
            key_arg.clone(),
            "--secret".into(),
            secret,
        ]
    };
    // A secret typed on the command line is refused, and not echoed.
    let typed = register(format!("aws_secret_access_key={}", keys.secret));
    let (code, err) = me.fails(&strs(&typed)).await?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("NAME=@FILE") && err.contains("aws_secret_access_key"),
        "{err}"
    );
    assert!(!err.contains(&keys.secret), "{err}");
    // Without a terminal, a secret left out cannot be prompted for: it is named.
    let (code, err) = me
        .fails(&[
            "service-connector",
            "register",
            "aws-s3",
            "--type",
            "aws",
            "--auth-method",
            "iam-role",
            "--config",
            &role_arg,
            "--secret",
            &key_arg,
        ])
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("needs the secret aws_secret_access_key") && err.contains("@FILE"),
        "{err}"
    );
    // A wrong secret (from stdin) fails verification at the cloud: nothing is stored.
    let stdin_args = register("aws_secret_access_key=@-".into());
    let stdin_args = strs(&stdin_args);
    let (code, out, err) = me
        .run_with(&stdin_args, Some("not-the-secret\n"), &[])
        .await?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the cloud refused: SignatureDoesNotMatch"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");
    // A definite answer: nothing to retry with an idempotency key.
    assert!(!err.contains("outcome is unknown"), "{err}");
    let listed = me.json(&["service-connector", "list"]).await?;
    assert_eq!(listed["total"], 0, "{listed}");

    // The right one from stdin: verified against moto (it checks signatures) and saved.
    let out = me
        .ok_with(&stdin_args, Some(&format!("{}\n", keys.secret)), &[])
        .await?;
    assert!(out.contains("Registered service connector aws-s3"), "{out}");
    assert!(
        out.contains("SECRET AWS_SECRET_ACCESS_KEY  [HIDDEN]"),
        "{out}"
    );
    assert!(!out.contains(&keys.secret), "{out}");

    // list, with the server filtering on what the CLI sends.
    let out = me.ok(&["service-connector", "list"]).await?;
    assert!(
        out.contains("aws-s3") && out.contains("iam-role") && out.contains("s3-bucket"),
        "{out}"
    );
    let mine = me
        .json(&[
            "service-connector",
            "list",
            "--label",
            "team=ml",
            "--type",
            "aws",
        ])
        .await?;
    assert_eq!(mine["total"], 1, "{mine}");
    assert_eq!(mine["items"][0]["name"], "aws-s3");
    assert_eq!(mine["items"][0]["labels"], json!({"team": "ml"}));
    let other = me
        .json(&["service-connector", "list", "--label", "team=web"])
        .await?;
    assert_eq!(other["total"], 0, "{other}");
    let (code, out, err) = me
        .run(&[
            "service-connector",
            "list",
            "--resource-type",
            "kubernetes-cluster",
        ])
        .await?;
    assert_eq!(code, 0);
    assert!(
        !out.contains("aws-s3") && err.contains("No service connectors found"),
        "{out}{err}"
    );

    // describe: the secret's name, never its value.
    let out = me.ok(&["service-connector", "describe", "aws-s3"]).await?;
    assert!(
        out.contains("SECRET AWS_SECRET_ACCESS_KEY  [HIDDEN]"),
        "{out}"
    );
    assert!(
        out.contains("SECRET AWS_ACCESS_KEY_ID") && out.contains(&role),
        "{out}"
    );
    assert!(
        !out.contains(&keys.secret) && !out.contains(&keys.id),
        "{out}"
    );
    let described = me
        .json(&["service-connector", "describe", "aws-s3"])
        .await?;
    assert_eq!(
        described["secrets"],
        json!({"aws_access_key_id": "[HIDDEN]", "aws_secret_access_key": "[HIDDEN]"})
    );
    assert_eq!(described["configuration"]["endpoint_url"], aws.url());
    assert!(!described.to_string().contains(&keys.secret));

    // The catalogue.
    let out = me.ok(&["service-connector", "list-types"]).await?;
    let aws_row = out
        .lines()
        .find(|l| l.starts_with("aws "))
        .with_context(|| format!("an aws row: {out}"))?;
    assert!(
        aws_row.contains("iam-role") && aws_row.contains("s3-bucket"),
        "{out}"
    );
    let out = me
        .ok(&[
            "service-connector",
            "describe-type",
            "aws",
            "--auth-method",
            "iam-role",
        ])
        .await?;
    for expected in [
        "role_arn",
        "region",
        "aws_access_key_id",
        "aws_secret_access_key",
        "kubernetes-cluster",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    let method = me
        .json(&[
            "service-connector",
            "describe-type",
            "aws",
            "--auth-method",
            "iam-role",
        ])
        .await?;
    assert_eq!(method["auth_method"], "iam-role");
    assert_eq!(method["revocable"], false);

    // verify and list-resources reach moto through the role.
    let out = me.ok(&["service-connector", "verify", "aws-s3"]).await?;
    assert!(out.starts_with("Service connector aws-s3 works, authenticated as arn:aws:sts::123456789012:assumed-role/writer/"), "{out}");
    me.ok(&[
        "service-connector",
        "verify",
        "aws-s3",
        "--resource-type",
        "s3-bucket",
        "--resource-id",
        "team-data",
    ])
    .await?;
    let (_, err) = me
        .fails(&[
            "service-connector",
            "verify",
            "aws-s3",
            "--resource-type",
            "s3-bucket",
            "--resource-id",
            "other-data",
        ])
        .await?;
    assert!(
        err.contains("other-data") || err.contains("AccessDenied") || err.contains("403"),
        "{err}"
    );
    let out = me
        .ok(&["service-connector", "verify", "aws-s3", "--list-resources"])
        .await?;
    assert!(
        out.contains("s3://team-data") && out.contains("s3://other-data"),
        "{out}"
    );
    let out = me
        .ok(&[
            "service-connector",
            "list-resources",
            "--resource-type",
            "s3-bucket",
        ])
        .await?;
    let row = out
        .lines()
        .find(|l| l.starts_with("aws-s3"))
        .with_context(|| format!("an aws-s3 row: {out}"))?;
    assert!(
        row.contains("s3://team-data") && row.contains("s3://other-data"),
        "{out}"
    );
    let found = me.json(&["service-connector", "list-resources"]).await?;
    assert_eq!(found[0]["connector_name"], "aws-s3", "{found}");
    Ok(())
}

#[tokio::test]
async fn credentials_come_in_each_tools_format_and_the_shell_and_the_sdk_use_them()
-> anyhow::Result<()> {
    let (aws, keys, role) = aws_with_role().await;
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    register_iam_role(&app, &admin, "aws-s3", &aws, &keys, &role).await?;
    let me = Machine::admin(&app).await?;
    let base = [
        "service-connector",
        "credentials",
        "aws-s3",
        "--resource-type",
        "s3-bucket",
        "--resource-id",
        "team-data",
    ];
    let with = |extra: &[&'static str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args
    };

    // -o json: the API's answer; the session reaches its bucket only.
    let issued = me.json(&base).await?;
    assert_eq!(issued["resource_id"], "s3://team-data", "{issued}");
    assert_eq!(issued["revocable"], false);
    let credentials = issued["credentials"]
        .as_object()
        .context("credentials")?
        .clone();
    let field = |name: &str| credentials[name].as_str().unwrap_or_default().to_owned();
    assert_ne!(
        field("aws_access_key_id"),
        keys.id,
        "a role session, not the keys"
    );
    assert_eq!(field("endpoint_url"), aws.url());
    let s3 = s3_with_issued(&aws.url(), &credentials);
    s3.put_object()
        .bucket("team-data")
        .key("from-json.txt")
        .body(b"x".to_vec().into())
        .send()
        .await
        .context("the issued session writes to its bucket")?;

    // The table names the fields and shows no value; stderr says how to see them.
    let (code, out, err) = me.run(&base).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("aws_secret_access_key") && out.contains("s3://team-data"),
        "{out}"
    );
    assert!(
        !out.contains(&field("aws_secret_access_key"))
            && !out.contains(&field("aws_access_key_id")),
        "{out}"
    );
    assert!(err.contains("--format env|aws-process"), "{err}");

    // aws-process: exactly what a credential_process prints (the same live lease).
    let out = me.ok(&with(&["--format", "aws-process"])).await?;
    let process: Value = serde_json::from_str(&out)?;
    let expiration =
        chrono::DateTime::parse_from_rfc3339(issued["expires_at"].as_str().context("expires_at")?)?
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        process,
        json!({
            "Version": 1,
            "AccessKeyId": field("aws_access_key_id"),
            "SecretAccessKey": field("aws_secret_access_key"),
            "SessionToken": field("aws_session_token"),
            "Expiration": expiration,
        })
    );

    // env: a shell evaluates it, and the AWS SDK run from that shell uses the keys (and
    // the endpoint) and nothing else.
    let gatehouse = workspace_bin("gatehouse")?;
    let probe = workspace_example("aws_profile_probe")?;
    let script = format!(
        "eval \"$(\"$GATEHOUSE\" {} --format env)\" && exec \"$PROBE\" \"$1\" from-env.txt",
        base.join(" ")
    );
    let sh = Path::new("/bin/sh");
    let run_in_shell = |bucket: &'static str| {
        let script = script.clone();
        let gatehouse = gatehouse.to_string_lossy().into_owned();
        let probe = probe.to_string_lossy().into_owned();
        let me = &me;
        async move {
            me.program(
                sh,
                &["-c", &script, "sh", bucket],
                None,
                &[("GATEHOUSE", &gatehouse), ("PROBE", &probe)],
            )
            .await
        }
    };
    let (code, out, err) = run_in_shell("team-data").await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(object_exists(&aws, "team-data", "from-env.txt").await);
    let (code, out, err) = run_in_shell("other-data").await?;
    assert_ne!(
        code, 0,
        "the role's session may not write elsewhere: {out}{err}"
    );
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(!object_exists(&aws, "other-data", "from-env.txt").await);
    let env_text = me.ok(&with(&["--format", "env"])).await?;
    assert!(
        env_text.contains(&format!("export AWS_ENDPOINT_URL='{}'\n", aws.url()))
            && env_text.contains(&format!("export AWS_REGION='{REGION}'\n")),
        "{env_text}"
    );

    // login for the AWS CLI and SDKs: a profile whose credential_process prints the same
    // JSON; the user's other profiles are kept byte for byte.
    let before = "# mine\n[default]\nregion = eu-west-1\n\n[profile prod]\nrole_arn = x\n";
    std::fs::write(me.path("aws-config"), before)?;
    let mut login = base.to_vec();
    login[1] = "login";
    let out = me.ok(&login).await?;
    assert!(out.contains("AWS_PROFILE=gatehouse-aws-s3"), "{out}");
    let config = std::fs::read_to_string(me.path("aws-config"))?;
    let section = config.strip_prefix(before).context("other profiles kept")?;
    assert!(
        section.starts_with("\n[profile gatehouse-aws-s3]\n"),
        "{config}"
    );
    assert!(
        section.contains(&format!("region = {REGION}\n")),
        "{config}"
    );
    assert!(
        section.contains(&format!("endpoint_url = {}\n", aws.url())),
        "{config}"
    );
    let line = section
        .lines()
        .find_map(|l| l.strip_prefix("credential_process = "))
        .context("a credential_process line")?;
    // Run as the AWS SDKs run it: split on spaces.
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(Path::new(words[0]), gatehouse);
    let (code, out, err) = me
        .program(Path::new(words[0]), &words[1..], None, &[])
        .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out)?, process);
    // botocore (the AWS CLI's SDK, from moto's virtualenv) reads the profile, runs the
    // process and accepts its answer.
    let python = gatehouse_testsupport::moto::moto_server_bin()?.with_file_name("python3");
    let script = "import botocore.session\n\
        s = botocore.session.Session(profile='gatehouse-aws-s3')\n\
        c = s.get_credentials().get_frozen_credentials()\n\
        print(c.access_key, c.secret_key, c.token, s.get_config_variable('region'))\n";
    let (code, out, err) = me.program(&python, &["-c", script], None, &[]).await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "{} {} {} {REGION}",
            field("aws_access_key_id"),
            field("aws_secret_access_key"),
            field("aws_session_token")
        )
    );

    // Formats that do not fit are refused, saying which do.
    let (code, err) = me.fails(&with(&["--format", "kube-exec"])).await?;
    assert_eq!(code, 1);
    assert!(err.contains("use --format env|aws-process"), "{err}");
    let (code, _) = me.fails(&with(&["--format", "env", "-o", "json"])).await?;
    assert_eq!(code, 2);
    Ok(())
}

/// The password in moto's ECR authorization token, as ECR hands it to the admin.
async fn ecr_password(aws: &Admin) -> anyhow::Result<String> {
    use base64::Engine as _;
    let token = aws_sdk_ecr::Client::new(&aws.config())
        .get_authorization_token()
        .send()
        .await?;
    let encoded = token
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .context("a token")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded)?)?;
    let (user, password) = decoded.split_once(':').context("user:password")?;
    anyhow::ensure!(user == "AWS", "ECR's user is AWS, not {user}");
    Ok(password.to_owned())
}

/// A tool on the test's PATH, or `None` (then said on stderr). With
/// `GATEHOUSE_TEST_REQUIRE_TOOLS=1` a missing tool is a failure.
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
        eprintln!("{name} is not on PATH: reading its files without it");
    }
    found
}

/// The kubeconfig of `machine` as kubectl reads it (`kubectl config view`), or parsed
/// from its YAML when kubectl is not installed.
async fn kubeconfig_view(machine: &Machine) -> anyhow::Result<Value> {
    match tool("kubectl") {
        Some(kubectl) => {
            let (code, out, err) = machine
                .program(
                    &kubectl,
                    &["config", "view", "--raw", "-o", "json"],
                    None,
                    &[],
                )
                .await?;
            anyhow::ensure!(code == 0, "kubectl config view: {err}");
            Ok(serde_json::from_str(&out)?)
        }
        None => Ok(serde_norway::from_str(&std::fs::read_to_string(
            machine.path("kubeconfig"),
        )?)?),
    }
}

/// The entry `name` of a kubeconfig list (`clusters`, `users`, `contexts`).
fn named<'a>(config: &'a Value, list: &str, name: &str) -> anyhow::Result<&'a Value> {
    config[list]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .with_context(|| format!("no {list} entry {name}: {config}"))
}

#[tokio::test]
async fn registry_and_cluster_logins_set_up_docker_and_kubectl_to_ask_gatehouse()
-> anyhow::Result<()> {
    let aws = Admin::unenforced().await;
    let (server, ca) = aws.create_cluster("training").await;
    let password = ecr_password(&aws).await?;
    let app = TestApp::spawn().await?;
    let me = Machine::admin(&app).await?;
    std::fs::write(me.path("admin-key-id"), &aws.keys.id)?;
    std::fs::write(me.path("admin-secret"), &aws.keys.secret)?;
    let key_arg = format!("aws_access_key_id=@{}", me.path_text("admin-key-id"));
    let secret_arg = format!("aws_secret_access_key=@{}", me.path_text("admin-secret"));
    let endpoint_arg = format!("endpoint_url={}", aws.url());
    let region_arg = format!("region={REGION}");
    for (name, resource_type) in [
        ("aws-ecr", "docker-registry"),
        ("aws-eks", "kubernetes-cluster"),
    ] {
        me.ok(&[
            "service-connector",
            "register",
            name,
            "--type",
            "aws",
            "--auth-method",
            "secret-key",
            "--resource-type",
            resource_type,
            "--config",
            &region_arg,
            "--config",
            &endpoint_arg,
            "--secret",
            &key_arg,
            "--secret",
            &secret_arg,
        ])
        .await?;
    }

    // docker-helper: ECR's own login.
    let registry_args = [
        "service-connector",
        "credentials",
        "aws-ecr",
        "--resource-type",
        "docker-registry",
        "--resource-id",
        REGISTRY,
    ];
    let mut args = registry_args.to_vec();
    args.extend(["--format", "docker-helper"]);
    let answer: Value = serde_json::from_str(&me.ok(&args).await?)?;
    assert_eq!(
        answer,
        json!({"ServerURL": REGISTRY, "Username": "AWS", "Secret": password})
    );

    // login for Docker: a credHelpers entry, everything else of the config kept, and the
    // helper linked.
    std::fs::create_dir_all(me.path("docker"))?;
    std::fs::write(
        me.path("docker/config.json"),
        r#"{"auths": {"ghcr.io": {}}, "credHelpers": {"gcr.io": "gcloud"}, "psFormat": "table {{.ID}}"}"#,
    )?;
    let bin = me.path_text("bin");
    let mut args = registry_args.to_vec();
    args.remove(1);
    args.insert(1, "login");
    args.extend(["--install-helper", &bin]);
    let out = me.ok(&args).await?;
    assert!(
        out.contains(&format!("docker-credential-gatehouse for {REGISTRY}")),
        "{out}"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(me.path("docker/config.json"))?)?;
    assert_eq!(
        config,
        json!({"auths": {"ghcr.io": {}}, "psFormat": "table {{.ID}}",
            "credHelpers": {"gcr.io": "gcloud", REGISTRY: "gatehouse"}})
    );
    let helper = me.path("bin/docker-credential-gatehouse");
    assert_eq!(std::fs::read_link(&helper)?, workspace_bin("gatehouse")?);

    // Docker runs the helper with `get` and the registry on stdin.
    let (code, out, err) = me
        .program(
            &helper,
            &["get"],
            Some(&format!("https://{REGISTRY}\n")),
            &[],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)?,
        json!({"ServerURL": format!("https://{REGISTRY}"), "Username": "AWS", "Secret": password})
    );
    let (code, out, _) = me
        .program(&helper, &["get"], Some("ghcr.io\n"), &[])
        .await?;
    assert_eq!(
        (code, out.trim()),
        (1, "credentials not found in native keychain")
    );
    let (code, out, _) = me.program(&helper, &["list"], None, &[]).await?;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out)?,
        json!({REGISTRY: "aws-ecr"})
    );
    let (code, _, _) = me
        .program(
            &helper,
            &["store"],
            Some(r#"{"ServerURL":"x","Username":"u","Secret":"s"}"#),
            &[],
        )
        .await?;
    assert_eq!(code, 1);

    // kube-exec: an ExecCredential with EKS's token for the cluster.
    let cluster_args = [
        "service-connector",
        "credentials",
        "aws-eks",
        "--resource-type",
        "kubernetes-cluster",
        "--resource-id",
        "training",
    ];
    let mut args = cluster_args.to_vec();
    args.extend(["--format", "kube-exec"]);
    let credential: Value = serde_json::from_str(&me.ok(&args).await?)?;
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(credential["kind"], "ExecCredential");
    let token = credential["status"]["token"].as_str().context("a token")?;
    assert!(token.starts_with("k8s-aws-v1."), "{token}");
    let expires = credential["status"]["expirationTimestamp"]
        .as_str()
        .context("an expiry")?;
    assert!(
        expires.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );

    // login for kubectl: a context whose user runs the CLI as an exec plugin.
    let mut args = cluster_args.to_vec();
    args.remove(1);
    args.insert(1, "login");
    let out = me.ok(&args).await?;
    assert!(out.contains("kubectl --context gatehouse-aws-eks"), "{out}");
    let config = kubeconfig_view(&me).await?;
    assert_eq!(config["current-context"], "gatehouse-aws-eks", "{config}");
    let context = named(&config, "contexts", "gatehouse-aws-eks")?;
    let cluster = named(
        &config,
        "clusters",
        context["context"]["cluster"].as_str().context("cluster")?,
    )?;
    assert_eq!(cluster["cluster"]["server"], server.as_str());
    assert_eq!(
        cluster["cluster"]["certificate-authority-data"],
        ca.as_str()
    );
    let user = named(
        &config,
        "users",
        context["context"]["user"].as_str().context("user")?,
    )?;
    let exec = &user["user"]["exec"];
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    let command = exec["command"].as_str().context("command")?;
    assert_eq!(Path::new(command), workspace_bin("gatehouse")?);
    let plugin_args: Vec<&str> = exec["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut expected = cluster_args.to_vec();
    expected.extend(["--format", "kube-exec"]);
    assert_eq!(plugin_args, expected);
    // What kubectl would run answers the same live lease's token.
    let (code, out, err) = me
        .program(Path::new(command), &plugin_args, None, &[])
        .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)?["status"]["token"],
        token
    );
    Ok(())
}

#[tokio::test]
async fn auto_configure_takes_the_keys_from_the_environment_or_a_profile_and_points_at_its_endpoint()
-> anyhow::Result<()> {
    let (aws, keys, role) = aws_with_role().await;
    let app = TestApp::spawn().await?;
    let me = Machine::admin(&app).await?;
    let url = aws.url();

    // The environment: long-lived keys become session-token; the region and endpoint
    // come along, so the verification (on by default) reaches moto.
    let (code, out, err) = me
        .run_with(
            &[
                "service-connector",
                "register",
                "from-env",
                "--type",
                "aws",
                "--auto-configure",
            ],
            None,
            &[
                ("AWS_ACCESS_KEY_ID", &keys.id),
                ("AWS_SECRET_ACCESS_KEY", &keys.secret),
                ("AWS_REGION", REGION),
                ("AWS_ENDPOINT_URL", &url),
            ],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("From the environment (AWS_ACCESS_KEY_ID): auth method session-token"),
        "{err}"
    );
    assert!(
        !out.contains(&keys.secret) && !err.contains(&keys.secret),
        "{out}{err}"
    );
    let described = me
        .json(&["service-connector", "describe", "from-env"])
        .await?;
    assert_eq!(described["auth_method"], "session-token");
    assert_eq!(
        described["configuration"],
        json!({"region": REGION, "endpoint_url": url})
    );
    let out = me.ok(&["service-connector", "verify", "from-env"]).await?;
    assert!(
        out.contains("authenticated as arn:aws:iam::123456789012:user/connector"),
        "{out}"
    );

    // A shared-config profile that assumes a role with a source profile's keys.
    std::fs::write(
        me.path("ml-config"),
        format!(
            "[default]\nregion = eu-west-1\n\n[profile ml]\nrole_arn = {role}\nsource_profile = base\n\
             region = {REGION}\nendpoint_url = {url}\n"
        ),
    )?;
    std::fs::write(
        me.path("ml-credentials"),
        format!(
            "[base]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            keys.id, keys.secret
        ),
    )?;
    let (code, out, err) = me
        .run_with(
            &[
                "service-connector",
                "register",
                "from-profile",
                "--type",
                "aws",
                "--auto-configure",
                "--resource-type",
                "s3-bucket",
            ],
            None,
            &[
                ("AWS_CONFIG_FILE", &me.path_text("ml-config")),
                (
                    "AWS_SHARED_CREDENTIALS_FILE",
                    &me.path_text("ml-credentials"),
                ),
                ("AWS_PROFILE", "ml"),
            ],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("From the AWS profile \"ml\": auth method iam-role"),
        "{err}"
    );
    let described = me
        .json(&["service-connector", "describe", "from-profile"])
        .await?;
    assert_eq!(described["auth_method"], "iam-role");
    assert_eq!(
        described["configuration"],
        json!({"region": REGION, "endpoint_url": url, "role_arn": role})
    );
    // Its credentials are the role's session: they reach the role's bucket.
    let issued = me
        .json(&[
            "service-connector",
            "credentials",
            "from-profile",
            "--resource-type",
            "s3-bucket",
            "--resource-id",
            "s3://team-data",
        ])
        .await?;
    let credentials = issued["credentials"].as_object().context("credentials")?;
    s3_with_issued(&url, credentials)
        .put_object()
        .bucket("team-data")
        .key("from-profile.txt")
        .body(b"x".to_vec().into())
        .send()
        .await
        .context("the role's session writes to its bucket")?;

    // Nothing found: a clear error, nothing registered.
    let (code, err) = me
        .fails(&[
            "service-connector",
            "register",
            "none",
            "--type",
            "aws",
            "--auto-configure",
        ])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("no AWS credentials found"), "{err}");
    Ok(())
}

#[tokio::test]
async fn grants_let_a_ci_job_get_credentials_and_leases_say_they_cannot_be_revoked()
-> anyhow::Result<()> {
    let aws = Admin::unenforced().await;
    aws.create_bucket("a-bucket").await;
    aws.create_bucket("b-bucket").await;
    let app = TestApp::spawn().await?;
    let admin_token = app.admin_token().await?;
    register_session_token(&app, &admin_token, "aws-s3", &aws).await?;
    app.create_service_account(&admin_token, "ci-bot").await?;
    let (_, key) = app
        .create_api_key(&admin_token, "ci-bot", json!({"name": "ci"}))
        .await?;
    app.user_with_token(&admin_token, "eve", "member").await?;
    let admin = Machine::admin(&app).await?;
    let ci = Machine::ci(&app, &key)?;
    let eve = Machine::person(&app, "eve", "eve-password").await?;
    let creds = |bucket: &'static str| {
        [
            "service-connector",
            "credentials",
            "aws-s3",
            "--resource-type",
            "s3-bucket",
            "--resource-id",
            bucket,
        ]
    };

    // Before a grant, the connector does not exist for the CI job.
    let (code, err) = ci.fails(&creds("a-bucket")).await?;
    assert_eq!(code, 1);
    assert!(
        err.contains("not_found: no service connector \"aws-s3\""),
        "{err}"
    );

    let out = admin
        .ok(&[
            "service-connector",
            "grant",
            "aws-s3",
            "--to",
            "ci-bot",
            "--resource-id",
            "s3://a-bucket",
        ])
        .await?;
    assert!(
        out.contains("Granted service connector aws-s3 to ci-bot for s3://a-bucket"),
        "{out}"
    );
    let out = admin
        .ok(&["service-connector", "list-grants", "aws-s3"])
        .await?;
    let row = out
        .lines()
        .find(|l| l.starts_with("ci-bot"))
        .with_context(|| format!("a ci-bot row: {out}"))?;
    assert!(row.contains("s3://a-bucket"), "{out}");
    let grants = admin
        .json(&["service-connector", "list-grants", "aws-s3"])
        .await?;
    assert_eq!(grants[0]["principal_name"], "ci-bot", "{grants}");
    assert_eq!(grants[0]["resource_ids"], json!(["s3://a-bucket"]));

    // The CI job gets credentials for its bucket, and is told which one when it asks
    // for another.
    let issued = ci.json(&creds("a-bucket")).await?;
    assert_eq!(issued["resource_id"], "s3://a-bucket");
    let lease = issued["lease_id"]
        .as_str()
        .context("a lease id")?
        .to_owned();
    let (code, err) = ci.fails(&creds("b-bucket")).await?;
    assert_eq!(code, 1);
    assert!(err.contains("s3://a-bucket"), "{err}");

    // Leases: listed, described by a prefix, and an STS session is not revocable.
    let out = ci.ok(&["lease", "list"]).await?;
    assert!(out.contains(&lease[..8]) && out.contains("aws-s3"), "{out}");
    let listed = admin
        .json(&["lease", "list", "--connector", "aws-s3"])
        .await?;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], lease.as_str());
    let out = ci.ok(&["lease", "describe", &lease[..8]]).await?;
    assert!(
        out.contains(&lease) && out.contains("s3://a-bucket"),
        "{out}"
    );
    let described = ci.json(&["lease", "describe", &lease]).await?;
    assert_eq!(described["id"], lease.as_str());
    assert!(
        described.get("credentials").is_none(),
        "a lease shows no secret: {described}"
    );
    let (code, err) = ci.fails(&["lease", "revoke", &lease]).await?;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot be revoked at the cloud; they expire at"),
        "{err}"
    );
    let (code, out, err) = ci.run(&["lease", "revoke", &lease, "-o", "json"]).await?;
    assert_eq!(code, 1, "{out}");
    let error: Value = serde_json::from_str(&err)?;
    assert_eq!(error["error"], "conflict", "{error}");
    assert_eq!(error["code"], "not_revocable", "{error}");

    // Someone without a grant sees nothing: 404 for the connector.
    let (code, err) = eve
        .fails(&["service-connector", "describe", "aws-s3"])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("no service connector \"aws-s3\""), "{err}");
    let (code, err) = eve.fails(&creds("a-bucket")).await?;
    assert_eq!(code, 1);
    assert!(err.contains("no service connector \"aws-s3\""), "{err}");
    let (code, out, err) = eve
        .run(&["service-connector", "describe", "aws-s3", "-o", "json"])
        .await?;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&err)?["error"],
        "not_found",
        "{err}"
    );

    // The grant ends: the CI job is refused again.
    let out = admin
        .ok(&[
            "service-connector",
            "revoke-grant",
            "aws-s3",
            "--from",
            "ci-bot",
        ])
        .await?;
    assert!(
        out.starts_with("ci-bot may no longer use service connector aws-s3"),
        "{out}"
    );
    let grants = admin
        .json(&["service-connector", "list-grants", "aws-s3"])
        .await?;
    assert_eq!(grants, json!([]));
    let (_, err) = ci.fails(&creds("a-bucket")).await?;
    assert!(err.contains("no service connector \"aws-s3\""), "{err}");
    Ok(())
}

#[tokio::test]
async fn bad_registrations_are_refused_with_the_servers_reason() -> anyhow::Result<()> {
    let aws = Admin::unenforced().await;
    let app = TestApp::spawn().await?;
    let me = Machine::admin(&app).await?;
    std::fs::write(me.path("id"), "AKIAANY0000000000001")?;
    std::fs::write(me.path("secret"), "any-secret")?;
    let id_arg = format!("aws_access_key_id=@{}", me.path_text("id"));
    let secret_arg = format!("aws_secret_access_key=@{}", me.path_text("secret"));
    let endpoint_arg = format!("endpoint_url={}", aws.url());
    let register = |extra: &[&'static str]| {
        let mut args: Vec<String> = [
            "service-connector",
            "register",
            "bad",
            "--type",
            "aws",
            "--auth-method",
            "session-token",
            "--config",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend([
            endpoint_arg.clone(),
            "--config".into(),
            format!("region={REGION}"),
            "--secret".into(),
            id_arg.clone(),
            "--secret".into(),
            secret_arg.clone(),
        ]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };

    let (code, err) = me
        .fails(&[
            "service-connector",
            "register",
            "bad",
            "--type",
            "nope",
            "--auth-method",
            "x",
        ])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("nope"), "{err}");
    let (code, err) = me
        .fails(&["service-connector", "describe-type", "nope"])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("nope"), "{err}");
    let (code, err) = me
        .fails(&[
            "service-connector",
            "register",
            "bad",
            "--type",
            "aws",
            "-i",
        ])
        .await?;
    assert_eq!(code, 2);
    assert!(err.contains("needs a terminal"), "{err}");
    let (code, err) = me
        .fails(&[
            "service-connector",
            "register",
            "bad",
            "--type",
            "aws",
            "--auth-method",
            "nope",
        ])
        .await?;
    assert_eq!(code, 2);
    assert!(
        err.contains("aws has no auth method \"nope\": it has") && err.contains("iam-role"),
        "{err}"
    );
    // What only the server checks: its 422, naming the field.
    for (extra, field) in [
        (&["--config", "colour=blue"][..], "colour"),
        (
            &[
                "--resource-type",
                "s3-bucket",
                "--resource-id",
                "Not_A_Bucket!",
            ][..],
            "resource_id",
        ),
        (&["--expiration-seconds", "60"][..], "expiration_seconds"),
    ] {
        let args = register(extra);
        let (code, out, err) = me.run(&strs(&args)).await?;
        assert_eq!(code, 1, "{extra:?}: {out}{err}");
        assert!(err.contains(field), "{field}: {err}");
        let (_, _, json_err) = me.run(&[strs(&args), vec!["-o", "json"]].concat()).await?;
        let error: Value = serde_json::from_str(&json_err)?;
        assert_eq!(error["error"], "invalid", "{error}");
    }
    let listed = me.json(&["service-connector", "list"]).await?;
    assert_eq!(listed["total"], 0, "nothing stored: {listed}");
    Ok(())
}

#[tokio::test]
async fn an_artifact_store_registered_through_the_cli_keeps_its_connector_until_disconnected()
-> anyhow::Result<()> {
    let aws = Admin::unenforced().await;
    aws.create_bucket("zenfiles").await;
    let app = TestApp::spawn().await?;
    let admin_token = app.admin_token().await?;
    register_session_token(&app, &admin_token, "aws-s3", &aws).await?;
    let me = Machine::admin(&app).await?;

    let out = me
        .ok(&[
            "artifact-store",
            "register",
            "s3-zenfiles",
            "--flavor",
            "s3",
            "--path",
            "s3://zenfiles",
            "--connector",
            "aws-s3",
        ])
        .await?;
    assert!(out.contains("s3-zenfiles"), "{out}");
    let described = me
        .json(&["artifact-store", "describe", "s3-zenfiles"])
        .await?;
    assert_eq!(described["flavor"], "s3");
    assert_eq!(described["configuration"], json!({"path": "s3://zenfiles"}));
    assert_eq!(
        described["connector"]["resource_id"], "s3://zenfiles",
        "{described}"
    );
    let out = me
        .ok(&["artifact-store", "describe", "s3-zenfiles"])
        .await?;
    assert!(
        out.contains("aws-s3") && out.contains("s3://zenfiles"),
        "{out}"
    );
    let (code, err) = me
        .fails(&[
            "artifact-store",
            "register",
            "missing",
            "--flavor",
            "s3",
            "--path",
            "s3://no-such-bucket",
            "--connector",
            "aws-s3",
        ])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("no-such-bucket"), "{err}");

    let (code, err) = me
        .fails(&["artifact-store", "register", "odd", "--flavor", "gcs"])
        .await?;
    assert_eq!(code, 2);
    assert!(err.contains("it has s3"), "{err}");

    // Its credentials, through the connector, for its bucket.
    let issued = me
        .json(&["artifact-store", "credentials", "s3-zenfiles"])
        .await?;
    assert_eq!(issued["resource_id"], "s3://zenfiles");
    let credentials = issued["credentials"].as_object().context("credentials")?;
    s3_with_issued(&aws.url(), credentials)
        .put_object()
        .bucket("zenfiles")
        .key("artifact")
        .body(b"x".to_vec().into())
        .send()
        .await
        .context("the store's credentials write to its bucket")?;
    let env_text = me
        .ok(&[
            "artifact-store",
            "credentials",
            "s3-zenfiles",
            "--format",
            "env",
        ])
        .await?;
    assert!(env_text.contains("export AWS_SESSION_TOKEN="), "{env_text}");

    // The connector cannot be deleted while the store uses it; the message names it.
    let (code, err) = me
        .fails(&["service-connector", "delete", "aws-s3", "-y"])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("s3-zenfiles"), "{err}");
    me.ok(&["artifact-store", "disconnect", "s3-zenfiles"])
        .await?;
    let described = me
        .json(&["artifact-store", "describe", "s3-zenfiles"])
        .await?;
    assert!(described["connector"].is_null(), "{described}");
    me.ok(&["artifact-store", "delete", "s3-zenfiles", "-y"])
        .await?;
    let (code, err) = me
        .fails(&["artifact-store", "describe", "s3-zenfiles"])
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("no component \"s3-zenfiles\""), "{err}");
    me.ok(&["service-connector", "delete", "aws-s3", "-y"])
        .await?;
    let listed = me.json(&["service-connector", "list"]).await?;
    assert_eq!(listed["total"], 0, "{listed}");
    Ok(())
}

/// The `Authorization` headers a server saw.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A Kubernetes API server for kubectl, standing in for the EKS cluster moto describes
/// but does not serve: HTTPS (kubectl sends no bearer token over plain HTTP) with a
/// self-signed certificate made by `openssl` in `dir` (`cert.pem`), answering `/version`
/// to the bearer `token` only, as EKS answers a token it accepts. Returns its URL and the
/// `Authorization` headers it saw.
fn tls_cluster(openssl: &Path, dir: &Path, token: String) -> anyhow::Result<(String, Seen)> {
    use rustls::pki_types::pem::PemObject as _;
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::sync::{Arc, Mutex};
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new(openssl)
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
        .output()?;
    anyhow::ensure!(made.status.success(), "openssl: {made:?}");
    let certs =
        rustls::pki_types::CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key)?;
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("https://{}", listener.local_addr()?);
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
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
            let (status, body) = if auth == format!("Bearer {token}") {
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
    Ok((url, seen))
}

/// Real kubectl, with the context `login` wrote, runs the CLI as its exec plugin (which
/// asks the real server, which asks moto's EKS) and sends the cluster the token. The
/// cluster moto describes is served by no one, so the context's cluster is pointed at a
/// local API server (a stand-in of the cluster, not of Gatehouse) that accepts that token.
#[tokio::test]
async fn kubectl_runs_the_exec_plugin_login_wrote_and_sends_its_token() -> anyhow::Result<()> {
    let (Some(kubectl), Some(openssl)) = (tool("kubectl"), tool("openssl")) else {
        return Ok(());
    };
    let aws = Admin::unenforced().await;
    aws.create_cluster("training").await;
    let app = TestApp::spawn().await?;
    let admin_token = app.admin_token().await?;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin_token),
            Some(json!({
                "name": "aws-eks", "connector_type": "aws", "auth_method": "secret-key",
                "resource_types": ["kubernetes-cluster"],
                "configuration": {"region": REGION, "endpoint_url": aws.url()},
                "secrets": {"aws_access_key_id": aws.keys.id, "aws_secret_access_key": aws.keys.secret},
            })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let me = Machine::admin(&app).await?;
    let args = [
        "service-connector",
        "login",
        "aws-eks",
        "--resource-type",
        "kubernetes-cluster",
        "--resource-id",
        "training",
        "--profile",
        "training",
    ];
    me.ok(&args).await?;
    let issued = me
        .json(&[
            "service-connector",
            "credentials",
            "aws-eks",
            "--resource-type",
            "kubernetes-cluster",
            "--resource-id",
            "training",
        ])
        .await?;
    let token = issued["credentials"]["token"]
        .as_str()
        .context("a token")?
        .to_owned();

    let certs = tempfile::tempdir()?;
    let (url, seen) = tls_cluster(&openssl, certs.path(), token.clone())?;
    let cert = certs.path().join("cert.pem").to_string_lossy().into_owned();
    let (code, _, err) = me
        .program(
            &kubectl,
            &[
                "config",
                "set-cluster",
                "training",
                "--server",
                &url,
                "--certificate-authority",
                &cert,
                "--embed-certs=true",
            ],
            None,
            &[],
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = me
        .program(
            &kubectl,
            &["--context", "training", "get", "--raw", "/version"],
            None,
            &[],
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("v1.32.0"), "{out}");
    let auth = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        !auth.is_empty() && auth.iter().all(|a| *a == format!("Bearer {token}")),
        "{auth:?}"
    );
    Ok(())
}
