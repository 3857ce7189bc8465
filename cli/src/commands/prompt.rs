//! Reading answers and passwords: from a terminal (passwords without echo) or, for
//! scripts, from stdin (`--password-stdin`, one line per password).
//!
//! Everything here blocks; commands call it through [`blocking`].

use std::io::{BufRead, IsTerminal as _, Write as _};

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

/// Runs blocking terminal or stdin I/O off the async executor.
pub async fn blocking<T, F>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .context("the prompt task failed")?
}

/// Whether stdin is a terminal someone can answer on.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads `n` lines from `reader` as secrets (line ends removed; empty lines refused).
pub fn read_secret_lines(
    reader: &mut impl BufRead,
    n: usize,
    what: &[&str],
) -> anyhow::Result<Vec<SecretString>> {
    let mut secrets = Vec::with_capacity(n);
    for i in 0..n {
        let name = what.get(i).copied().unwrap_or("password");
        let mut line = String::new();
        let read = reader.read_line(&mut line).context("reading stdin")?;
        if read == 0 {
            anyhow::bail!("stdin ended before the {name}: expected {n} line(s)");
        }
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        let secret = SecretString::from(line);
        if secret.expose_secret().is_empty() {
            anyhow::bail!("the {name} read from stdin is empty");
        }
        secrets.push(secret);
    }
    Ok(secrets)
}

/// Reads `n` secret lines from stdin (`--password-stdin`).
pub fn secrets_from_stdin(
    n: usize,
    what: &'static [&'static str],
) -> anyhow::Result<Vec<SecretString>> {
    read_secret_lines(&mut std::io::stdin().lock(), n, what)
}

/// Prompts for a password on the terminal without echo.
pub fn password(prompt: &str) -> anyhow::Result<SecretString> {
    require_terminal("the password", "use --password-stdin")?;
    let password =
        SecretString::from(rpassword::prompt_password(prompt).context("reading the password")?);
    if password.expose_secret().is_empty() {
        anyhow::bail!("the password is empty");
    }
    Ok(password)
}

/// Prompts for a new password twice and checks that both agree.
pub fn new_password(prompt: &str) -> anyhow::Result<SecretString> {
    let first = password(prompt)?;
    let second = password("Repeat it: ")?;
    if first.expose_secret() != second.expose_secret() {
        anyhow::bail!("the passwords do not match");
    }
    Ok(first)
}

/// Prompts for a line of text (echoed) on the terminal.
pub fn line(prompt: &str, what: &str, flag_hint: &str) -> anyhow::Result<String> {
    require_terminal(what, flag_hint)?;
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading stdin")?;
    Ok(answer.trim().to_owned())
}

/// Asks a yes/no question on the terminal; only `y` or `yes` is yes.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    let answer = line(
        &format!("{question} [y/N] "),
        "a confirmation",
        "pass --yes",
    )?;
    Ok(is_yes(&answer))
}

/// Before an action that cannot be undone (`delete`, `retire`): without a terminal to ask
/// on, refuses and names `--yes`.
pub fn ensure_can_confirm(action: &str) -> anyhow::Result<()> {
    if !stdin_is_terminal() {
        anyhow::bail!(
            "refusing to {action} without confirmation: stdin is not a terminal, pass --yes"
        );
    }
    Ok(())
}

/// Asks `question` on the terminal; anything but yes aborts with "nothing was `done`".
pub async fn confirm_or_abort(question: String, done: &str) -> anyhow::Result<()> {
    if !blocking(move || confirm(&question)).await? {
        anyhow::bail!("aborted: nothing was {done}");
    }
    Ok(())
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn require_terminal(what: &str, hint: &str) -> anyhow::Result<()> {
    if !stdin_is_terminal() {
        anyhow::bail!("no terminal to prompt for {what}: {hint}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_lines_lose_their_line_ends_only() -> anyhow::Result<()> {
        let mut input = std::io::Cursor::new("old pass \r\nnew-pass\nignored\n");
        let lines = read_secret_lines(&mut input, 2, &["current password", "new password"])?;
        assert_eq!(lines[0].expose_secret(), "old pass ");
        assert_eq!(lines[1].expose_secret(), "new-pass");
        Ok(())
    }

    #[test]
    fn a_last_line_without_newline_counts() -> anyhow::Result<()> {
        let lines = read_secret_lines(&mut std::io::Cursor::new("secret"), 1, &[])?;
        assert_eq!(lines[0].expose_secret(), "secret");
        Ok(())
    }

    #[test]
    fn missing_or_empty_lines_are_refused_by_name() {
        let error = read_secret_lines(
            &mut std::io::Cursor::new("only-one\n"),
            2,
            &["current password", "new password"],
        )
        .expect_err("too short");
        assert!(
            error.to_string().contains("before the new password"),
            "{error}"
        );
        let error = read_secret_lines(&mut std::io::Cursor::new("\n"), 1, &["password"])
            .expect_err("empty");
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn only_y_or_yes_confirms() {
        assert!(is_yes("y") && is_yes("YES") && is_yes(" yes\n"));
        assert!(!is_yes("") && !is_yes("n") && !is_yes("yep"));
    }
}
