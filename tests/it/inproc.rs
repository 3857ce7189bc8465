//! The in-process test app itself: settings reach it by their environment variable names,
//! as they reach the binaries, and a name `gatehouse dev` does not know is refused.

use gatehouse_e2e::InProcApp;

#[tokio::test]
async fn settings_given_by_environment_variable_name_take_effect() -> anyhow::Result<()> {
    let app = InProcApp::spawn_with(&[("GATEHOUSE_DEVICE_POLL_INTERVAL", "7")]).await?;
    let started = app.device_authorization().await?;
    assert_eq!(started["interval"], 7, "{started}");
    let (status, me) = app.current_user(&app.admin_token().await?).await?;
    assert_eq!(status, reqwest::StatusCode::OK, "{me}");
    assert_eq!(me["name"], "admin");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_setting_gatehouse_dev_does_not_have_is_refused_by_name() {
    let error = InProcApp::spawn_with(&[("GATEHOUSE_NO_SUCH_SETTING", "1")])
        .await
        .expect_err("an unknown setting");
    assert!(
        error.to_string().contains("GATEHOUSE_NO_SUCH_SETTING"),
        "{error:#}"
    );
}
