//! Session policies (down-scoping) and the syntax checks of IAM names.
//!
//! A session policy passed to `AssumeRole` or `GetFederationToken` can only narrow what
//! the role (or the IAM user) may do: the session's permissions are the intersection. For
//! a named resource the generated policy grants that resource only and never uses `*` as
//! a resource, with one exception forced by AWS: `ecr:GetAuthorizationToken` has no
//! resource type (IAM accepts only `*` for it), and a registry cannot be used without it;
//! the pull/push actions it goes with are granted on the account's repositories only.
//!
//! These are pure functions, tested on the documents themselves: the AWS stand-in the
//! integration tests use (moto) does not evaluate session policies.

use serde_json::{Value, json};

use super::resources::{Resource, is_account_id, is_partition, partition_of};

/// The pull and push actions a registry session may use on the account's repositories.
pub const ECR_REPOSITORY_ACTIONS: [&str; 9] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
];

/// The least-privilege session policy for `resource`: `None` for `aws-generic` (the role's
/// own permissions apply). `region` is the connector's, `account` the account the
/// credentials act in (for the cluster's ARN).
pub fn session_policy(resource: &Resource, region: &str, account: &str) -> Option<Value> {
    match resource {
        Resource::Generic => None,
        Resource::Bucket(bucket) => Some(bucket_policy(region, bucket)),
        Resource::Registry(registry) => Some(registry_policy(&registry.region, &registry.account)),
        Resource::Cluster(name) => Some(cluster_policy(region, account, name)),
    }
}

/// The bucket's objects, and listing and locating the bucket itself.
pub fn bucket_policy(region: &str, bucket: &str) -> Value {
    let partition = partition_of(region);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Bucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": [format!("arn:{partition}:s3:::{bucket}")],
            },
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [format!("arn:{partition}:s3:::{bucket}/*")],
            },
        ],
    })
}

/// An ECR authorization token (resource `*`: the action has no resource type), and pull
/// and push on the account's repositories in the registry's region.
pub fn registry_policy(region: &str, account: &str) -> Value {
    let partition = partition_of(region);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AuthorizationToken",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "Repositories",
                "Effect": "Allow",
                "Action": ECR_REPOSITORY_ACTIONS,
                "Resource": [format!("arn:{partition}:ecr:{region}:{account}:repository/*")],
            },
        ],
    })
}

/// `eks:DescribeCluster` on the cluster's ARN.
pub fn cluster_policy(region: &str, account: &str, cluster: &str) -> Value {
    let partition = partition_of(region);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Cluster",
                "Effect": "Allow",
                "Action": ["eks:DescribeCluster"],
                "Resource": [format!("arn:{partition}:eks:{region}:{account}:cluster/{cluster}")],
            },
        ],
    })
}

/// The policy of a federation token for `aws-generic`: without a policy a federated user
/// has no permissions at all, so it is given everything, which the IAM user's own
/// policies then bound (the session is the intersection): the user's permissions, as an
/// assumed role without a session policy has the role's.
pub fn federation_generic_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "CallerPermissions", "Effect": "Allow", "Action": "*", "Resource": "*"}],
    })
}

/// Checks `arn:aws[-partition]:iam::<12 digits>:role/<path/>name`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let form = "arn:aws:iam::<12-digit account>:role/<path/>name";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!("{arn:?} is not an IAM role ARN ({form})"));
    };
    if *scheme != "arn" || !is_partition(partition) || *service != "iam" || !region.is_empty() {
        return Err(format!("{arn:?} is not an IAM role ARN ({form})"));
    }
    if !is_account_id(account) {
        return Err(format!("{arn:?}: the account must be 12 digits ({form})"));
    }
    let path_and_name = resource
        .strip_prefix("role/")
        .ok_or_else(|| format!("{arn:?} is not a role ({form})"))?;
    check_path_and_name(path_and_name, 64).map_err(|why| format!("{arn:?}: {why} ({form})"))
}

/// Checks a managed policy ARN: `arn:aws[-partition]:iam::<12 digits or aws>:policy/<path/>name`.
pub fn check_policy_arn(arn: &str) -> Result<(), String> {
    let form = "arn:aws:iam::<12-digit account or aws>:policy/<path/>name";
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts.as_slice() else {
        return Err(format!("{arn:?} is not an IAM policy ARN ({form})"));
    };
    if *scheme != "arn"
        || !is_partition(partition)
        || *service != "iam"
        || !region.is_empty()
        || !(is_account_id(account) || *account == "aws")
    {
        return Err(format!("{arn:?} is not an IAM policy ARN ({form})"));
    }
    let path_and_name = resource
        .strip_prefix("policy/")
        .ok_or_else(|| format!("{arn:?} is not a policy ({form})"))?;
    check_path_and_name(path_and_name, 128).map_err(|why| format!("{arn:?}: {why} ({form})"))
}

/// `path/segments/name`: a name of 1..=`max` characters of `[A-Za-z0-9+=,.@_-]`, each path
/// segment of the same characters.
fn check_path_and_name(path_and_name: &str, max: usize) -> Result<(), String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    let mut segments: Vec<&str> = path_and_name.split('/').collect();
    let name = segments.pop().unwrap_or_default();
    if name.is_empty() || name.len() > max || !name.chars().all(name_char) {
        return Err(format!(
            "the name must be 1 to {max} characters of letters, digits and +=,.@_-"
        ));
    }
    if segments
        .iter()
        .any(|s| s.is_empty() || !s.chars().all(name_char))
    {
        return Err(
            "the path must be segments of letters, digits and +=,.@_- joined by '/'".into(),
        );
    }
    Ok(())
}

/// Checks an inline policy document given as a string: JSON, an object, with a
/// `Statement` (an object or an array of objects).
pub fn check_policy_document(document: &str) -> Result<(), String> {
    let value: Value =
        serde_json::from_str(document).map_err(|e| format!("not a JSON document: {e}"))?;
    let object = value
        .as_object()
        .ok_or("a policy document is a JSON object")?;
    match object.get("Statement") {
        Some(Value::Object(_)) => Ok(()),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_object) => {
            Ok(())
        }
        _ => Err(
            "a policy document needs a \"Statement\": an object or a non-empty array of objects"
                .into(),
        ),
    }
}

/// A name STS accepts for a session (`RoleSessionName`: 2–64 characters) or a federated
/// user (`Name`: 2–32) from the principal's name: characters outside `[A-Za-z0-9+=,.@_-]`
/// become `-`, the rest is cut to `max`, and a name too short is padded.
pub fn sts_name(name: &str, max: usize) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    while out.len() < 2 {
        out.push('-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::aws::resources::Registry;

    /// Every `Resource` value of every statement, flattened.
    fn resources(policy: &Value) -> Vec<String> {
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .flat_map(|s| match &s["Resource"] {
                Value::String(r) => vec![r.clone()],
                Value::Array(rs) => rs
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect(),
                other => panic!("unexpected Resource {other}"),
            })
            .collect()
    }

    fn actions_on(policy: &Value, resource: &str) -> Vec<String> {
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| match &s["Resource"] {
                Value::String(r) => r == resource,
                Value::Array(rs) => rs.iter().any(|r| r == resource),
                _ => false,
            })
            .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_bucket_session_reaches_that_bucket_and_its_objects_only() {
        let policy = session_policy(
            &Resource::Bucket("data".into()),
            "eu-west-1",
            "123456789012",
        )
        .expect("a bucket has a policy");
        let mut got = resources(&policy);
        got.sort();
        assert_eq!(got, ["arn:aws:s3:::data", "arn:aws:s3:::data/*"]);
        let bucket_actions = actions_on(&policy, "arn:aws:s3:::data");
        assert_eq!(bucket_actions, ["s3:ListBucket", "s3:GetBucketLocation"]);
        let object_actions = actions_on(&policy, "arn:aws:s3:::data/*");
        assert!(object_actions.contains(&"s3:GetObject".to_owned()));
        assert!(object_actions.contains(&"s3:PutObject".to_owned()));
        assert!(
            object_actions
                .iter()
                .all(|a| a.starts_with("s3:") && !a.contains('*'))
        );
        for s in policy["Statement"].as_array().expect("statements") {
            assert_eq!(s["Effect"], "Allow");
        }
    }

    #[test]
    fn a_bucket_session_in_china_uses_the_china_partition() {
        let policy = bucket_policy("cn-north-1", "data");
        assert!(
            resources(&policy)
                .iter()
                .all(|r| r.starts_with("arn:aws-cn:s3:::data"))
        );
    }

    #[test]
    fn a_cluster_session_may_describe_that_cluster_only() {
        let policy = session_policy(
            &Resource::Cluster("prod".into()),
            "us-east-2",
            "123456789012",
        )
        .expect("a cluster has a policy");
        assert_eq!(
            resources(&policy),
            ["arn:aws:eks:us-east-2:123456789012:cluster/prod"]
        );
        assert_eq!(
            actions_on(&policy, "arn:aws:eks:us-east-2:123456789012:cluster/prod"),
            ["eks:DescribeCluster"]
        );
    }

    #[test]
    fn a_registry_session_gets_a_token_and_the_accounts_repositories_only() {
        let registry = Registry {
            account: "210987654321".into(),
            region: "ap-south-1".into(),
        };
        let policy = session_policy(&Resource::Registry(registry), "us-east-1", "123456789012")
            .expect("a registry has a policy");
        let repositories = "arn:aws:ecr:ap-south-1:210987654321:repository/*";
        assert_eq!(resources(&policy), ["*", repositories]);
        // The one `*`: GetAuthorizationToken has no resource type, and nothing else.
        assert_eq!(actions_on(&policy, "*"), ["ecr:GetAuthorizationToken"]);
        let repo_actions = actions_on(&policy, repositories);
        assert!(repo_actions.contains(&"ecr:BatchGetImage".to_owned()));
        assert!(repo_actions.contains(&"ecr:PutImage".to_owned()));
        assert!(!repo_actions.iter().any(|a| a == "ecr:*" || a == "*"));
    }

    #[test]
    fn generic_has_no_session_policy() {
        assert_eq!(
            session_policy(&Resource::Generic, "eu-west-1", "123456789012"),
            None
        );
    }

    #[test]
    fn role_arns_are_checked() {
        for ok in [
            "arn:aws:iam::123456789012:role/deploy",
            "arn:aws:iam::123456789012:role/service-role/ci/deploy@x",
            "arn:aws-us-gov:iam::123456789012:role/deploy",
            "arn:aws-cn:iam::123456789012:role/deploy",
        ] {
            assert_eq!(check_role_arn(ok), Ok(()), "{ok}");
        }
        for bad in [
            "deploy",
            "arn:aws:iam::12345678901:role/deploy",
            "arn:aws:iam:us-east-1:123456789012:role/deploy",
            "arn:aws:iam::123456789012:user/deploy",
            "arn:aws:sts::123456789012:role/deploy",
            "arn:gcp:iam::123456789012:role/deploy",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a//b",
            "arn:aws:iam::123456789012:role/has space",
            &format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65)),
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_arns_are_checked() {
        assert_eq!(
            check_policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess"),
            Ok(())
        );
        assert_eq!(
            check_policy_arn("arn:aws:iam::123456789012:policy/team/s3-read"),
            Ok(())
        );
        assert!(check_policy_arn("arn:aws:iam::123456789012:role/x").is_err());
        assert!(check_policy_arn("arn:aws:iam::amazon:policy/x").is_err());
        assert!(check_policy_arn("ReadOnlyAccess").is_err());
    }

    #[test]
    fn policy_documents_are_checked() {
        assert_eq!(
            check_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
            ),
            Ok(())
        );
        assert_eq!(
            check_policy_document(r#"{"Statement":{"Effect":"Deny"}}"#),
            Ok(())
        );
        for bad in [
            "",
            "{",
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Statement":[]}"#,
            r#"{"Statement":["x"]}"#,
        ] {
            assert!(check_policy_document(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sts_names_fit_the_allowed_characters_and_lengths() {
        assert_eq!(sts_name("alice@example.com", 64), "alice@example.com");
        assert_eq!(sts_name("ci job #7", 64), "ci-job--7");
        assert_eq!(sts_name("x", 32), "x-");
        assert_eq!(sts_name("", 32), "--");
        assert_eq!(sts_name(&"a".repeat(40), 32).len(), 32);
        assert_eq!(sts_name("naïve", 64), "na-ve");
    }
}
