//! `infra completions` and `infra man`: generated at run time from the clap definitions, so
//! they always describe the binary that prints them (a build step would need the CLI's
//! types in a build script and leave the output in a hashed `target/` directory).

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell};

pub fn completions(shell: CompletionShell) -> Result<u8> {
    print!("{}", String::from_utf8(script(shell))?);
    Ok(0)
}

pub fn man() -> Result<u8> {
    print!("{}", String::from_utf8(page()?)?);
    Ok(0)
}

fn script(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "infra", &mut out);
    out
}

/// One page: the global options, then every command (and subcommand) with its own options,
/// as `git help`'s single pages read.
fn page() -> Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands() {
        render_command(&mut out, &format!("infra {}", sub.get_name()), sub);
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

fn render_command(out: &mut Vec<u8>, path: &str, cmd: &clap::Command) {
    let about = cmd.get_long_about().or(cmd.get_about()).map(|a| a.to_string()).unwrap_or_default();
    let mut usage = path.to_string();
    for arg in cmd.get_arguments().filter(|a| !a.is_global_set() && a.get_id() != "help") {
        let names: Vec<String> = arg.get_long().map(|l| format!("--{l}")).into_iter().chain(arg.get_short().map(|s| format!("-{s}"))).collect();
        let value = arg.get_value_names().map(|v| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "));
        let possible: Vec<String> = arg.get_possible_values().iter().map(|p| p.get_name().to_string()).collect();
        let shown = match (names.is_empty(), possible.is_empty(), arg.get_action().takes_values()) {
            (true, false, _) => possible.join("|"),
            (true, true, _) => value.unwrap_or_else(|| arg.get_id().to_string().to_uppercase()),
            (false, false, true) => format!("{} {}", names.join(", "), possible.join("|")),
            (false, true, true) => format!("{} {}", names.join(", "), value.unwrap_or_else(|| arg.get_id().to_string().to_uppercase())),
            (false, _, false) => names.join(", "),
        };
        usage.push_str(&format!(" [{shown}]"));
    }
    out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", roff_escape(&usage), roff_escape(&about)).as_bytes());
    for arg in cmd.get_arguments().filter(|a| !a.is_global_set() && a.get_id() != "help" && a.get_help().is_some()) {
        let name = arg.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.extend_from_slice(format!(".RS\n.TP\n\\fI{}\\fR\n{}\n.RE\n", roff_escape(&name), roff_escape(&help)).as_bytes());
    }
    for sub in cmd.get_subcommands() {
        render_command(out, &format!("{path} {}", sub.get_name()), sub);
    }
}

/// Text for a roff line: backslashes doubled, and a leading `.` or `'` kept from being a request.
fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\\\").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and subcommand name, as clap knows them.
    fn command_paths() -> Vec<Vec<String>> {
        fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
            for sub in cmd.get_subcommands() {
                let mut path = prefix.to_vec();
                path.push(sub.get_name().to_string());
                out.push(path.clone());
                walk(sub, &path, out);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), &[], &mut out);
        out
    }

    #[test]
    fn completions_bash_script_parses_and_names_every_subcommand() {
        let bash = String::from_utf8(script(CompletionShell::Bash)).unwrap();
        let paths = command_paths();
        assert!(paths.iter().any(|p| p == &["graph"]) && paths.iter().any(|p| p == &["user", "create"]));
        for path in &paths {
            let name = path.last().unwrap();
            assert!(bash.split(|c: char| !c.is_alphanumeric() && c != '-' && c != '_').any(|w| w == name), "bash completion lacks {path:?}");
        }
        // bash itself reads it without a syntax error.
        let mut child = std::process::Command::new("bash")
            .arg("-n")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bash");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), bash.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for shell in [CompletionShell::Zsh, CompletionShell::Fish] {
            let text = String::from_utf8(script(shell)).unwrap();
            assert!(text.contains("graph") && text.contains("completions"), "{shell:?}");
        }
    }

    #[test]
    fn completions_man_page_renders_with_every_command_and_option() {
        let roff = String::from_utf8(page().unwrap()).unwrap();
        // Rendered by man(1) where it exists (it does wherever scripts/test.sh runs, as
        // Debian's man-db), else checked as roff text.
        let rendered = render_with_man(&roff).unwrap_or_else(|| roff.replace("\\-", "-").replace("\\fB", "").replace("\\fR", ""));
        for path in command_paths() {
            let line = format!("infra {}", path.join(" "));
            assert!(rendered.contains(&line), "man page lacks {line:?}:\n{rendered}");
        }
        for option in ["--config", "--state-dir", "--lock-wait", "--offline", "--format", "--yes"] {
            assert!(rendered.contains(option), "man page lacks {option}");
        }
        assert!(rendered.contains("INFRA_LOCK_WAIT"), "the env fallback of --lock-wait is documented");
    }

    fn render_with_man(roff: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("infra.1");
        std::fs::write(&file, roff).unwrap();
        let out = std::process::Command::new("man").arg("-l").arg(&file).env("MANPAGER", "cat").env("MANWIDTH", "200").output().ok()?;
        assert!(out.status.success(), "man -l failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // man's own warnings about the page (bad requests) would land on stderr.
        assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", String::from_utf8_lossy(&out.stderr));
        // Overstrike bold (`c\bc`) when the output is not a terminal: keep the letters.
        let mut clean = String::new();
        for c in text.chars() {
            if c == '\u{8}' {
                clean.pop();
            } else {
                clean.push(c);
            }
        }
        Some(clean)
    }
}
