//! The binary's own descriptions: `version` / `--version` name the revision and features, and
//! `--help` of every command (found by walking the help itself) describes the command and each
//! of its arguments.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().expect("run switchboard");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn version_names_the_revision_and_the_features() {
    let version = run(&["version"]);
    assert_eq!(run(&["--version"]), version, "`--version` says the same");
    let lines: Vec<&str> = version.lines().collect();
    assert_eq!(lines.len(), 3, "{version}");
    assert_eq!(lines[0], format!("switchboard {}", env!("CARGO_PKG_VERSION")));
    let revision = lines[1].strip_prefix("revision: ").expect("a revision line");
    assert_eq!(lines[2], "features: none (the crate defines no cargo features)", "{version}");
    let short = run(&["-V"]);
    assert_eq!(short.trim(), format!("switchboard {} ({revision})", env!("CARGO_PKG_VERSION")));

    // Built from this repository, it is this repository's HEAD; without git it says so.
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let top = git(&["rev-parse", "--show-toplevel"]);
    let ours = top.is_some_and(|t| std::fs::canonicalize(t).ok() == std::fs::canonicalize(manifest_dir).ok());
    match git(&["rev-parse", "--short", "HEAD"])
        .filter(|_| ours && std::env::var_os("SWITCHBOARD_GIT_REVISION").is_none())
    {
        Some(head) => {
            let hash = revision.strip_suffix("-dirty").unwrap_or(revision);
            assert_eq!(hash, head, "{version}");
        }
        None => eprintln!("not built from a git work tree of this crate; the revision is {revision}"),
    }
    assert!(!revision.is_empty() && !revision.contains(char::is_whitespace), "{revision}");
}

/// The commands listed in a help text's `Commands:` section (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

/// Every argument line of the `Arguments:` and `Options:` sections of a `--help` text that has
/// no description, either on its line or indented below it.
fn undocumented_arguments(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_args = false;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_args = matches!(*line, "Arguments:" | "Options:");
            continue;
        }
        let spec = line.trim_start();
        let indent = line.len() - spec.len();
        if !in_args || indent == 0 || indent > 6 || !(spec.starts_with('-') || spec.starts_with('<')) {
            continue;
        }
        let inline = spec.split_once("  ").is_some_and(|(_, rest)| !rest.trim().is_empty());
        let below = lines.get(i + 1).is_some_and(|next| {
            let text = next.trim_start();
            !text.is_empty() && next.len() - text.len() > indent
        });
        if !inline && !below {
            missing.push(spec.to_owned());
        }
    }
    missing
}

#[test]
fn every_command_has_help_with_about_text_and_every_argument_described() {
    let mut todo = vec![Vec::<String>::new()];
    let mut checked = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(&args);
        let name = format!("switchboard {}", path.join(" "));
        let about = help.lines().next().unwrap_or_default();
        assert!(!about.trim().is_empty() && !about.starts_with("Usage:"), "`{name}` has no about text:\n{help}");
        assert!(help.contains("\nUsage: "), "`{name}`:\n{help}");
        let missing = undocumented_arguments(&help);
        assert!(missing.is_empty(), "`{name}` arguments without help: {missing:?}\n{help}");
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        checked.push(name);
    }
    checked.sort();
    for expected in ["backup", "restore", "serve", "check-config", "identity create", "token issue", "version"] {
        assert!(checked.contains(&format!("switchboard {expected}")), "{expected} was reached: {checked:?}");
    }

    // The top-level help explains configuration by file and environment.
    let top = run(&["--help"]);
    for needle in ["SWITCHBOARD__SECTION__KEY", "./config.toml", "--config"] {
        assert!(top.contains(needle), "--help mentions {needle}:\n{top}");
    }
    assert!(subcommands(&top).len() >= 8, "{top}");
}

#[test]
fn the_help_checker_sees_an_undocumented_argument() {
    let help = "About\n\nUsage: x [OPTIONS]\n\nOptions:\n      --bare\n\n      --fine\n          Says what.\n  -h, --help  Print help\n";
    assert_eq!(undocumented_arguments(help), ["--bare"]);
}
