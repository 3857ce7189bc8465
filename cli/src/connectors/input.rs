//! What connector commands read from people: `KEY=VALUE` options, secrets (from files,
//! stdin or a hidden prompt, never from the command line), and choices from a list.

use std::io::Read as _;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use super::client::SecretFields;
use crate::commands::UsageError;
use crate::commands::prompt;

/// Parses `KEY=VALUE` (`--config`, `--label`); the value may be empty (`KEY=`).
pub fn key_value(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// Parses an RFC 3339 time (`--expires-at`), kept as typed.
pub fn rfc3339(input: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(input)
        .map(|_| input.to_owned())
        .map_err(|_| "expected an RFC 3339 time such as 2026-12-31T23:59:59Z".to_owned())
}

/// How a `--secret NAME=...` option says where the value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `NAME=@FILE`: the file's contents, trailing line end removed.
    File(String),
    /// `NAME=@-`: stdin, trailing line end removed.
    Stdin,
}

/// The way to pass a secret, for error messages.
pub const SECRET_HINT: &str = "pass --secret NAME=@FILE (the file's contents) or --secret \
    NAME=@- (stdin), or leave it out to be prompted for it without echo";

/// Splits a `--secret` option into its name and source. A value typed on the command line
/// (`NAME=VALUE`) is refused, and the error never repeats it: command lines end up in
/// shell history and process listings.
pub fn secret_option(input: &str) -> Result<(String, SecretSource), UsageError> {
    let Some((name, rest)) = input.split_once('=') else {
        return Err(UsageError(format!(
            "--secret takes NAME=@FILE or NAME=@-: {SECRET_HINT}"
        )));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(UsageError(format!(
            "--secret needs a field name: {SECRET_HINT}"
        )));
    }
    match rest.strip_prefix('@') {
        Some("-") => Ok((name.to_owned(), SecretSource::Stdin)),
        Some(path) if !path.is_empty() => {
            Ok((name.to_owned(), SecretSource::File(path.to_owned())))
        }
        _ => Err(UsageError(format!(
            "refusing a secret value on the command line for {name} (it would stay in shell \
             history and process listings): {SECRET_HINT}"
        ))),
    }
}

fn trim_line_end(mut text: String) -> String {
    let end = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(end);
    text
}

/// Reads every `--secret` option; `stdin` gives stdin's contents (read at most once, so
/// only one option may name it).
pub fn read_secrets(
    options: &[String],
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
) -> anyhow::Result<SecretFields> {
    let mut secrets = SecretFields::default();
    let mut stdin_used = false;
    for option in options {
        let (name, source) = secret_option(option)?;
        let value = match source {
            SecretSource::File(path) => std::fs::read_to_string(&path)
                .with_context(|| format!("reading the secret {name} from {path}"))?,
            SecretSource::Stdin => {
                if stdin_used {
                    return Err(UsageError(
                        "only one --secret can read stdin (NAME=@-): pass the others as \
                         NAME=@FILE"
                            .into(),
                    )
                    .into());
                }
                stdin_used = true;
                stdin().with_context(|| format!("reading the secret {name} from stdin"))?
            }
        };
        let value = trim_line_end(value);
        if value.is_empty() {
            anyhow::bail!("the secret {name} is empty");
        }
        secrets.insert(name, SecretString::from(value));
    }
    Ok(secrets)
}

/// Reads all of stdin.
pub fn all_of_stdin() -> std::io::Result<String> {
    let mut text = String::new();
    std::io::stdin().lock().read_to_string(&mut text)?;
    Ok(text)
}

/// A `--config` value as JSON, typed by the property's schema (`integer`, `number`,
/// `boolean`, `array`, `object` are parsed; anything else stays a string). An empty value
/// is `null` where `empty_is_null` (update: it removes the key).
pub fn config_value(
    schema: Option<&Value>,
    key: &str,
    raw: &str,
    empty_is_null: bool,
) -> anyhow::Result<Value> {
    if raw.is_empty() && empty_is_null {
        return Ok(Value::Null);
    }
    let kind = schema
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(key))
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    match kind {
        Some("integer" | "number" | "boolean" | "array" | "object") => serde_json::from_str(raw)
            .map_err(|_| {
                UsageError(format!(
                    "--config {key}={raw}: {key} takes a JSON {}",
                    kind.unwrap_or_default()
                ))
                .into()
            }),
        _ => Ok(Value::String(raw.to_owned())),
    }
}

/// Prompts for a secret without echo; an empty answer is `None`.
pub fn hidden(prompt_text: &str) -> anyhow::Result<Option<SecretString>> {
    require_terminal()?;
    let value = rpassword::prompt_password(prompt_text).context("reading the secret")?;
    let value = SecretString::from(value);
    Ok((!value.expose_secret().is_empty()).then_some(value))
}

/// Fails unless a person can answer on stdin.
pub fn require_terminal() -> anyhow::Result<()> {
    if !prompt::stdin_is_terminal() {
        return Err(UsageError(
            "-i asks questions and needs a terminal: stdin is not one; pass the options \
             instead (see --help)"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// Asks for a line of text (echoed); an empty answer is `default` (when given).
pub fn text(question: &str, default: Option<&str>) -> anyhow::Result<String> {
    require_terminal()?;
    let shown = match default {
        Some(d) => format!("{question} [{d}]: "),
        None => format!("{question}: "),
    };
    let answer = prompt::line(&shown, "an answer", "pass the options instead")?;
    Ok(if answer.is_empty() {
        default.unwrap_or_default().to_owned()
    } else {
        answer
    })
}

/// The option an answer picks: its number (1-based) or its name; `None` when neither.
pub fn pick(answer: &str, options: &[String]) -> Option<usize> {
    let answer = answer.trim();
    if let Ok(n) = answer.parse::<usize>() {
        return (1..=options.len()).contains(&n).then(|| n - 1);
    }
    options.iter().position(|o| o == answer)
}

/// Shows numbered `options` (each with a note) and asks until one is picked.
pub fn choose(question: &str, options: &[(String, String)]) -> anyhow::Result<usize> {
    require_terminal()?;
    if options.is_empty() {
        anyhow::bail!("nothing to choose from for {question}");
    }
    if options.len() == 1 {
        eprintln!("{question}: {} (the only one)", options[0].0);
        return Ok(0);
    }
    eprintln!("{question}:");
    for (i, (name, note)) in options.iter().enumerate() {
        eprintln!("  {}) {name}  {}", i + 1, crate::output::sanitize(note));
    }
    let names: Vec<String> = options.iter().map(|(n, _)| n.clone()).collect();
    loop {
        let answer = prompt::line("Pick a number or a name: ", "a choice", "pass the options")?;
        match pick(&answer, &names) {
            Some(i) => return Ok(i),
            None => eprintln!("{answer:?} is not one of them."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_on_the_command_line_is_refused_without_repeating_it() {
        let error = secret_option("aws_secret_access_key=wJalrXUtnFEMI").expect_err("plain");
        let text = error.to_string();
        assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
        assert!(
            text.contains("aws_secret_access_key") && text.contains("NAME=@FILE"),
            "{text}"
        );
        assert!(secret_option("novalue").is_err());
        assert!(secret_option("=@f").is_err());
        assert!(secret_option("k=@").is_err());
        assert_eq!(
            secret_option("k=@/tmp/f").ok(),
            Some(("k".into(), SecretSource::File("/tmp/f".into())))
        );
        assert_eq!(
            secret_option("k=@-").ok(),
            Some(("k".into(), SecretSource::Stdin))
        );
    }

    #[test]
    fn secrets_come_from_files_and_stdin_with_the_line_end_trimmed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("key");
        std::fs::write(&file, "from-file\r\n")?;
        let mut reads = 0;
        let mut stdin = || {
            reads += 1;
            Ok("from-stdin\n".to_owned())
        };
        let secrets = read_secrets(
            &[
                format!("a={}", format_args!("@{}", file.display())),
                "b=@-".into(),
            ],
            &mut stdin,
        )?;
        assert_eq!(
            secrets
                .get("a")
                .map(|s| s.expose_secret().to_owned())
                .as_deref(),
            Some("from-file")
        );
        assert_eq!(
            secrets
                .get("b")
                .map(|s| s.expose_secret().to_owned())
                .as_deref(),
            Some("from-stdin")
        );
        let twice = read_secrets(&["a=@-".into(), "b=@-".into()], &mut || Ok("x".into()));
        assert!(twice.is_err());
        let empty = read_secrets(&["a=@-".into()], &mut || Ok("\n".into()));
        assert!(empty.expect_err("empty").to_string().contains("empty"));
        assert_eq!(reads, 1);
        Ok(())
    }

    #[test]
    fn config_values_follow_the_schema() -> anyhow::Result<()> {
        let schema = serde_json::json!({"properties": {
            "region": {"type": "string"}, "port": {"type": "integer"}, "tags": {"type": "array"}}});
        assert_eq!(config_value(Some(&schema), "region", "123", false)?, "123");
        assert_eq!(config_value(Some(&schema), "port", "8443", false)?, 8443);
        assert_eq!(
            config_value(Some(&schema), "tags", r#"["a"]"#, false)?,
            serde_json::json!(["a"])
        );
        assert!(config_value(Some(&schema), "port", "many", false).is_err());
        assert_eq!(config_value(None, "x", "", true)?, Value::Null);
        assert_eq!(config_value(None, "x", "", false)?, "");
        Ok(())
    }

    #[test]
    fn a_choice_is_a_number_or_a_name() {
        let options = vec!["iam-role".to_owned(), "session-token".to_owned()];
        assert_eq!(pick("2", &options), Some(1));
        assert_eq!(pick(" iam-role ", &options), Some(0));
        assert_eq!(pick("0", &options), None);
        assert_eq!(pick("3", &options), None);
        assert_eq!(pick("other", &options), None);
    }

    #[test]
    fn key_values_need_a_key() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").is_err() && key_value("ab").is_err());
        assert!(rfc3339("2026-12-31T23:59:59Z").is_ok() && rfc3339("tomorrow").is_err());
    }
}
