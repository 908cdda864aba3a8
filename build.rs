//! Build facts for `switchboard version`: the git revision the binary was built from (with
//! `-dirty` when the work tree had changes), and the cargo features enabled.
//!
//! The revision is `unknown` when there is no git, or no repository of this crate (a source
//! tarball, a Docker build without `.git`); `SWITCHBOARD_GIT_REVISION` in the build environment
//! names it instead (the Dockerfile passes it as a build argument).
//!
//! Rebuilds: the script reruns when HEAD moves (a commit, a checkout) and when
//! `SWITCHBOARD_GIT_REVISION` changes, not on every edit, so `-dirty` tells the state of the work
//! tree at the last commit or checkout that was built, not at every later edit.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_GIT_REVISION");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));

    let revision = match std::env::var("SWITCHBOARD_GIT_REVISION") {
        Ok(named) if !named.trim().is_empty() => named.trim().to_owned(),
        _ => git_revision(&manifest_dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=SWITCHBOARD_GIT_REVISION={revision}");

    // Cargo sets CARGO_FEATURE_<NAME> for each enabled feature (and reruns the script when the
    // set changes).
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    features.sort();
    let features = if !features.is_empty() {
        features.join(",")
    } else if defines_features(&manifest_dir.join("Cargo.toml")) {
        "none enabled".to_owned()
    } else {
        "none (the crate defines no cargo features)".to_owned()
    };
    println!("cargo:rustc-env=SWITCHBOARD_FEATURES={features}");
}

/// Whether the manifest has a `[features]` table.
fn defines_features(manifest: &Path) -> bool {
    std::fs::read_to_string(manifest).is_ok_and(|text| text.lines().any(|l| l.trim() == "[features]"))
}

/// `abc1234` or `abc1234-dirty`, if this crate is the top of a git work tree and git runs.
fn git_revision(manifest_dir: &Path) -> Option<String> {
    // Only this crate's own repository: a tarball unpacked inside some other repository must not
    // report that one's revision.
    let top = git(manifest_dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if !same(Path::new(&top), manifest_dir) {
        return None;
    }
    // Rerun when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit),
    // found through git so that linked work trees (whose HEAD is elsewhere) work too. A path that
    // does not exist would make cargo rerun the script on every build, so only existing ones.
    let mut watched = vec![git(manifest_dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(manifest_dir, &["rev-parse", "--git-path", &branch])?);
    }
    watched.push(git(manifest_dir, &["rev-parse", "--git-path", "packed-refs"])?);
    for path in watched {
        let path = manifest_dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let hash = git(manifest_dir, &["rev-parse", "--short", "HEAD"])?;
    let dirty = !git(manifest_dir, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// The trimmed output of a git command that succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // No optional locks: `git status` must not write the index (and race a git command the
    // developer runs meanwhile).
    let out = Command::new("git").args(args).current_dir(dir).env("GIT_OPTIONAL_LOCKS", "0").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
