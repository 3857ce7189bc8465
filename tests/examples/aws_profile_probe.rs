//! Writes one object to S3 through the official AWS SDK for Rust, configured only by the
//! environment (`AWS_PROFILE`, `AWS_CONFIG_FILE`): how a user's job uses a profile that
//! `gatehouse service-connector login` wrote, whose `credential_process` fetches (and
//! refreshes) short-lived credentials from Gatehouse. The end-to-end suite runs it.
//!
//! Usage: `aws_profile_probe BUCKET KEY`; exits 0 once the object is written.

use aws_config::BehaviorVersion;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(bucket), Some(key)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: aws_profile_probe BUCKET KEY");
    };
    // The profile gives the region, the endpoint (moto's) and the credential process.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(gatehouse_testsupport::aws::http_client())
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(b"written through credential_process".to_vec().into())
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("put_object: {}", aws_sdk_s3::error::DisplayErrorContext(e))
        })?;
    println!("wrote s3://{bucket}/{key}");
    Ok(())
}
