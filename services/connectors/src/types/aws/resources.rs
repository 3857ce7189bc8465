//! Resource ids of the AWS type: parsing every accepted form into one canonical form.
//!
//! | resource type | accepted | canonical |
//! |---|---|---|
//! | `aws-generic` | no id (the resource is the connector's region) | – |
//! | `s3-bucket` | `s3://b`, `arn:<partition>:s3:::b`, `b` | `s3://b` |
//! | `docker-registry` | `<account>.dkr.ecr.<region>.amazonaws.com[.cn]`, also with `https://` | without the scheme |
//! | `kubernetes-cluster` | `name`, `arn:<partition>:eks:<region>:<account>:cluster/name` | `name` |

use std::fmt;

/// `aws-generic`: plain AWS keys for the region; no instances.
pub const AWS_GENERIC: &str = "aws-generic";
/// `s3-bucket`: one S3 bucket.
pub const S3_BUCKET: &str = "s3-bucket";
/// `docker-registry`: an account's ECR registry in one region.
pub const DOCKER_REGISTRY: &str = "docker-registry";
/// `kubernetes-cluster`: one EKS cluster.
pub const KUBERNETES_CLUSTER: &str = "kubernetes-cluster";

/// A resource of the AWS type, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `aws-generic`: the connector's region, no instance.
    Generic,
    /// An S3 bucket, by name.
    Bucket(String),
    /// An ECR registry: an account's registry in a region.
    Registry(Registry),
    /// An EKS cluster, by name (in the connector's region).
    Cluster(String),
}

impl Resource {
    /// The resource a request names: `resource_type` with its canonical (or raw) id.
    pub fn parse(resource_type: &str, id: Option<&str>) -> Result<Resource, String> {
        match (resource_type, id) {
            (AWS_GENERIC, None) => Ok(Resource::Generic),
            (AWS_GENERIC, Some(_)) => {
                Err("aws-generic has no instances: give no resource id".into())
            }
            (S3_BUCKET | DOCKER_REGISTRY | KUBERNETES_CLUSTER, None) => {
                Err(format!("{resource_type} needs a resource id"))
            }
            (S3_BUCKET, Some(raw)) => parse_bucket(raw).map(Resource::Bucket),
            (DOCKER_REGISTRY, Some(raw)) => Registry::parse(raw).map(Resource::Registry),
            (KUBERNETES_CLUSTER, Some(raw)) => parse_cluster(raw).map(Resource::Cluster),
            (other, _) => Err(format!("unknown resource type {other:?}")),
        }
    }

    /// The canonical id (`None` for [`Resource::Generic`]).
    pub fn canonical_id(&self) -> Option<String> {
        match self {
            Resource::Generic => None,
            Resource::Bucket(name) => Some(format!("s3://{name}")),
            Resource::Registry(registry) => Some(registry.to_string()),
            Resource::Cluster(name) => Some(name.clone()),
        }
    }
}

/// An ECR registry host: `<account>.dkr.ecr.<region>.amazonaws.com` (or `.com.cn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// The 12-digit account id.
    pub account: String,
    /// The region.
    pub region: String,
}

impl Registry {
    /// Parses `<account>.dkr.ecr.<region>.amazonaws.com[.cn]`, with or without `https://`
    /// and a trailing `/`.
    pub fn parse(raw: &str) -> Result<Registry, String> {
        let host = raw.trim();
        let host = host.strip_prefix("https://").unwrap_or(host);
        let host = host.strip_suffix('/').unwrap_or(host);
        let form = "an ECR registry is <12-digit account>.dkr.ecr.<region>.amazonaws.com";
        let rest = host
            .strip_suffix(".amazonaws.com.cn")
            .or_else(|| host.strip_suffix(".amazonaws.com"))
            .ok_or_else(|| format!("{raw:?} is not an ECR registry host: {form}"))?;
        let (account, rest) = rest
            .split_once(".dkr.ecr.")
            .ok_or_else(|| format!("{raw:?} is not an ECR registry host: {form}"))?;
        if !is_account_id(account) {
            return Err(format!("{raw:?}: the account must be 12 digits ({form})"));
        }
        if !is_region(rest) {
            return Err(format!("{raw:?}: {rest:?} is not an AWS region ({form})"));
        }
        Ok(Registry {
            account: account.to_owned(),
            region: rest.to_owned(),
        })
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        write!(f, "{}.dkr.ecr.{}.{suffix}", self.account, self.region)
    }
}

/// A bucket name from `s3://b`, `arn:<partition>:s3:::b` or `b`, checked against S3's
/// naming rules for general purpose buckets.
pub fn parse_bucket(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let name = if let Some(rest) = raw.strip_prefix("s3://") {
        rest.strip_suffix('/').unwrap_or(rest)
    } else if let Some(rest) = raw.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        match parts.as_slice() {
            [partition, "s3", "", "", name] if is_partition(partition) => *name,
            _ => {
                return Err(format!(
                    "{raw:?} is not an S3 bucket ARN (arn:aws:s3:::bucket)"
                ));
            }
        }
    } else {
        raw
    };
    check_bucket_name(name).map_err(|why| format!("{raw:?} is not a valid bucket name: {why}"))?;
    Ok(name.to_owned())
}

/// S3's rules for bucket names: 3–63 characters of lowercase letters, digits, `.` and `-`;
/// starting and ending with a letter or digit; no `..`; not an IP address; none of the
/// reserved prefixes and suffixes.
fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    if name.len() < 3 || name.len() > 63 {
        return Err("it must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Err("it must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("it must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it must not be formatted as an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err("it must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)");
    }
    if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Err(
            "it must not end with a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)",
        );
    }
    Ok(())
}

/// A cluster name from `name` or `arn:<partition>:eks:<region>:<account>:cluster/name`.
pub fn parse_cluster(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let name = if let Some(rest) = raw.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        match parts.as_slice() {
            [partition, "eks", region, account, resource]
                if is_partition(partition) && is_region(region) && is_account_id(account) =>
            {
                (*resource).strip_prefix("cluster/").ok_or_else(|| {
                    format!("{raw:?} is not an EKS cluster ARN (…:cluster/<name>)")
                })?
            }
            _ => {
                return Err(format!(
                    "{raw:?} is not an EKS cluster ARN (arn:aws:eks:<region>:<account>:cluster/<name>)"
                ));
            }
        }
    } else {
        raw
    };
    // EKS: 1–100 characters, a letter or digit first, then letters, digits, '-' and '_'.
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "{raw:?} is not a valid EKS cluster name (1–100 letters, digits, '-' or '_', starting with a letter or digit)"
        ));
    }
    Ok(name.to_owned())
}

/// `aws` or `aws-<suffix>` (`aws-cn`, `aws-us-gov`, `aws-iso-b`, ...).
pub fn is_partition(partition: &str) -> bool {
    partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('-')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        })
}

/// Twelve ASCII digits.
pub fn is_account_id(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

/// An AWS region name: lowercase words joined by `-`, ending in a number (`us-east-1`,
/// `us-gov-west-1`, `cn-north-1`, `ap-southeast-2`).
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words[0].len() == 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.len() <= 2
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// The ARN partition of `region` (`aws-cn` for `cn-*`, `aws-us-gov` for `us-gov-*`, ...).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(resource_type: &str, raw: &str) -> Result<String, String> {
        Resource::parse(resource_type, Some(raw)).map(|r| r.canonical_id().unwrap_or_default())
    }

    #[test]
    fn every_bucket_form_is_normalised_to_an_s3_url() {
        for raw in [
            "my-bucket",
            "s3://my-bucket",
            "s3://my-bucket/",
            "arn:aws:s3:::my-bucket",
            "arn:aws-cn:s3:::my-bucket",
        ] {
            assert_eq!(
                canonical(S3_BUCKET, raw).as_deref(),
                Ok("s3://my-bucket"),
                "{raw}"
            );
        }
    }

    #[test]
    fn bucket_names_that_break_s3_rules_are_refused_with_the_rule() {
        for (raw, why) in [
            ("ab", "3 to 63"),
            (&"a".repeat(64), "3 to 63"),
            ("My-Bucket", "lowercase"),
            ("my_bucket", "lowercase"),
            ("-bucket", "begin and end"),
            ("bucket-", "begin and end"),
            ("my..bucket", "adjacent periods"),
            ("192.168.1.1", "IP address"),
            ("xn--bucket", "reserved prefix"),
            ("bucket-s3alias", "reserved suffix"),
            ("s3://", "3 to 63"),
        ] {
            let err = canonical(S3_BUCKET, raw).expect_err(raw);
            assert!(err.contains(why), "{raw}: {err}");
        }
    }

    #[test]
    fn bucket_arns_of_other_services_or_with_keys_are_refused() {
        for raw in [
            "arn:aws:s3:us-east-1::b-bucket",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:s3:::bucket/key",
            "arn:azure:s3:::bucket",
        ] {
            assert!(canonical(S3_BUCKET, raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn registries_are_normalised_to_the_host_without_scheme() {
        for raw in [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
        ] {
            assert_eq!(
                canonical(DOCKER_REGISTRY, raw).as_deref(),
                Ok("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                "{raw}"
            );
        }
        let cn = Registry::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").expect("cn");
        assert_eq!(cn.region, "cn-north-1");
        assert_eq!(
            cn.to_string(),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn registry_hosts_that_are_not_ecr_are_refused() {
        for raw in [
            "docker.io",
            "12345.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.nowhere.amazonaws.com",
            "http://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.example.com",
        ] {
            assert!(canonical(DOCKER_REGISTRY, raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn clusters_are_normalised_to_their_name() {
        for raw in [
            "prod-1",
            "arn:aws:eks:us-east-1:123456789012:cluster/prod-1",
        ] {
            assert_eq!(
                canonical(KUBERNETES_CLUSTER, raw).as_deref(),
                Ok("prod-1"),
                "{raw}"
            );
        }
    }

    #[test]
    fn malformed_clusters_are_refused() {
        for raw in [
            "",
            "-prod",
            "prod/1",
            "arn:aws:eks:us-east-1:123:cluster/prod",
            "arn:aws:eks:us-east-1:123456789012:nodegroup/prod",
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            &"c".repeat(101),
        ] {
            assert!(canonical(KUBERNETES_CLUSTER, raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn generic_takes_no_id_and_instance_types_need_one() {
        assert_eq!(Resource::parse(AWS_GENERIC, None), Ok(Resource::Generic));
        assert!(Resource::parse(AWS_GENERIC, Some("us-east-1")).is_err());
        for t in [S3_BUCKET, DOCKER_REGISTRY, KUBERNETES_CLUSTER] {
            assert!(Resource::parse(t, None).is_err(), "{t}");
        }
        assert!(Resource::parse("gcs-bucket", Some("b")).is_err());
    }

    #[test]
    fn regions_and_partitions() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-2",
            "eu-central-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "us--1",
            "u-east-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("eu-west-1"), "aws");
        assert!(is_partition("aws-us-gov") && !is_partition("aws-") && !is_partition("gcp"));
    }
}
