//! `cargo xtask tidy`: the architecture rules of `docs/architecture.md` as checks, run in the
//! lint stage of `cargo xtask test`:
//!
//! - a leaf crate depends on no vz-* crate (dev-dependencies aside);
//! - `unsafe` code only in a crate's `sys` module, or in a file of [`UNSAFE_EXCEPTIONS`];
//! - no source file past [`MAX_LINES`] lines before its unit tests;
//! - public items documented: every member inherits the workspace lints (`missing_docs`,
//!   which clippy's `-D warnings` makes an error), none allows `missing_docs`, and every
//!   `.rs` file opens with a `//!` doc.
//!
//! The checks read the files as text; each returns the violations it found.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The crates that must not depend on another vz-* crate (design.md: "Each subsystem crate
/// is independent"), but for the kernel-interface layers in [`SHARED_LAYERS`].
pub(crate) const LEAVES: &[&str] =
    &["vz-bpf", "vz-cgroup", "vz-ns", "vz-ubc", "vz-sched", "vz-quota", "vz-cpt", "vz-template"];

/// Leaves that own one kernel interface for several subsystem crates (docs/architecture.md);
/// a subsystem crate may depend on them, and they on no vz-* crate.
pub(crate) const SHARED_LAYERS: &[&str] = &["vz-bpf", "vz-cgroup"];

/// The longest a file may be before its `#[cfg(test)]` module (house style: split past ~800).
pub(crate) const MAX_LINES: usize = 800;

/// Files outside a `sys` module allowed to hold `unsafe`, and why. It predates the rule and
/// belongs in `vz-ubc/src/sys.rs`.
pub(crate) const UNSAFE_EXCEPTIONS: &[(&str, &str)] = &[(
    "vz-ubc/src/iptent.rs",
    "setns, a raw netlink socket and getsockopt to count netfilter entries",
)];

/// Runs every check on the repository; fails listing every violation.
pub(crate) fn run(root: &Path) -> Result<()> {
    let members = members(root)?;
    let files = rust_files(root, &members)?;
    let mut problems = Vec::new();
    for leaf in LEAVES {
        let manifest = read(&root.join(leaf).join("Cargo.toml"))?;
        let layer = SHARED_LAYERS.contains(leaf);
        let allowed = |dep: &String| !layer && SHARED_LAYERS.contains(&dep.as_str());
        problems.extend(vz_dependencies(&manifest).into_iter().filter(|d| !allowed(d)).map(
            |dep| format!("{leaf}/Cargo.toml: the leaf crate depends on {dep} (only vz-ctl may)"),
        ));
    }
    for member in &members {
        let manifest = read(&root.join(member).join("Cargo.toml"))?;
        if !inherits_lints(&manifest) {
            problems.push(format!("{member}/Cargo.toml: no `[lints] workspace = true`"));
        }
    }
    for file in &files {
        let rel = file.strip_prefix(root).unwrap_or(file).to_string_lossy().into_owned();
        let text = read(file)?;
        problems.extend(check_file(&rel, &text));
    }
    if !problems.is_empty() {
        bail!("{} tidy problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    println!("tidy: {} crates, {} files: ok", members.len(), files.len());
    Ok(())
}

/// The checks of one source file (path relative to the root).
pub(crate) fn check_file(rel: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let allowed = is_sys_module(rel) || UNSAFE_EXCEPTIONS.iter().any(|(f, _)| *f == rel);
    if !allowed && let Some(line) = unsafe_line(text) {
        problems.push(format!("{rel}:{line}: `unsafe` outside the crate's sys module"));
    }
    let is_test_file = rel.contains("/tests/") || rel.contains("/benches/");
    let lines = non_test_lines(text);
    if !is_test_file && lines > MAX_LINES {
        problems
            .push(format!("{rel}: {lines} lines before its tests (at most {MAX_LINES}): split it"));
    }
    if !text.trim_start().starts_with("//!") && !text.trim_start().starts_with("#![") {
        problems.push(format!("{rel}: no `//!` doc at the top"));
    }
    if let Some(line) = text.lines().position(allows_missing_docs) {
        problems.push(format!("{rel}:{}: allows missing_docs", line + 1));
    }
    problems
}

/// `src/sys.rs` or a file of a `src/sys/` module.
fn is_sys_module(rel: &str) -> bool {
    rel.ends_with("/src/sys.rs") || rel.contains("/src/sys/")
}

fn allows_missing_docs(line: &str) -> bool {
    let code = code_of(line);
    code.contains("allow(") && code.contains("missing_docs")
}

/// The first line (1-based) with `unsafe` code: a block, fn, impl, trait or extern, not a
/// lint name (`unsafe_code`) or a comment.
pub(crate) fn unsafe_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let code = code_of(line);
            let mut rest = code.as_str();
            while let Some(at) = rest.find("unsafe") {
                let before = rest[..at].chars().next_back();
                let after = &rest[at + "unsafe".len()..];
                let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                let next = after.trim_start();
                let keyword = after.starts_with(char::is_whitespace) || after.is_empty();
                if word_start
                    && keyword
                    && (next.is_empty()
                        || ["{", "fn ", "impl", "trait ", "extern "]
                            .iter()
                            .any(|k| next.starts_with(k)))
                {
                    return true;
                }
                rest = after;
            }
            false
        })
        .map(|i| i + 1)
}

/// A line without its `//` comment and the contents of its string literals (a string that
/// spans lines is not followed: enough for the words these checks look for).
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_string = false;
                    code.push(c);
                }
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'/') => break,
            '"' => in_string = true,
            _ => {}
        }
        code.push(c);
    }
    code
}

/// Lines before the file's `#[cfg(test)]` module (all of them when it has none).
pub(crate) fn non_test_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len())
}

/// The vz-* crates among a manifest's normal (and build) dependencies.
pub(crate) fn vz_dependencies(manifest: &str) -> Vec<String> {
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.trim().to_owned();
            // `[dependencies.vz-ns]`
            if let Some(name) = dependency_table(&section).filter(|n| t_is_vz(n)) {
                found.push(name.trim_matches('"').to_owned());
            }
            continue;
        }
        if dependency_table(&section) != Some("") {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default().trim_matches('"');
        if t_is_vz(name) {
            found.push(name.to_owned());
        }
    }
    found
}

/// For a normal or build dependency section, what follows its table name: `""` for
/// `[dependencies]`, `"vz-ns"` for `[dependencies.vz-ns]`; `None` for other sections
/// (dev-dependencies among them).
fn dependency_table(section: &str) -> Option<&str> {
    let table = if section.starts_with("target.") {
        // `target.'cfg(unix)'.dependencies`
        let at = section.find(".dependencies").or_else(|| section.find(".build-dependencies"))?;
        &section[at + 1..]
    } else {
        section
    };
    for kind in ["dependencies", "build-dependencies"] {
        if table == kind {
            return Some("");
        }
        if let Some(name) = table.strip_prefix(kind).and_then(|r| r.strip_prefix('.')) {
            return Some(name);
        }
    }
    None
}

fn t_is_vz(name: &str) -> bool {
    name.starts_with("vz-") || name.starts_with("vz_")
}

/// `[lints]` with `workspace = true`.
fn inherits_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        } else if in_lints && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    false
}

/// The workspace members, from the root manifest's `members = [...]`.
fn members(root: &Path) -> Result<Vec<String>> {
    let manifest = read(&root.join("Cargo.toml"))?;
    let list = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members"))
        .and_then(|l| l.split_once('[').map(|(_, r)| r))
        .and_then(|l| l.split_once(']').map(|(l, _)| l))
        .context("no members = [...] line in Cargo.toml")?;
    Ok(list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect())
}

/// Every `.rs` file of the members (src, tests, benches, examples), sorted.
fn rust_files(root: &Path, members: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = members.iter().map(|m| root.join(m)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vz_dependencies_are_found_in_every_form() {
        let manifest = "[package]\nname = \"vz-ns\"\n\n[dependencies]\nlibc.workspace = true\n\
                        vz-ubc.workspace = true\n\"vz-sched\" = { path = \"../vz-sched\" }\n\n\
                        [dev-dependencies]\nvz-tests.workspace = true\n\n\
                        [dependencies.vz-quota]\npath = \"../vz-quota\"\n\n\
                        [target.'cfg(unix)'.dependencies]\nvz-cpt = { path = \"x\" }\n\
                        [build-dependencies]\nvz_template = \"1\"\n";
        assert_eq!(
            vz_dependencies(manifest),
            ["vz-ubc", "vz-sched", "vz-quota", "vz-cpt", "vz_template"]
        );
        assert!(
            vz_dependencies("[dependencies]\nnix = \"1\"\n[dev-dependencies]\nvz-tests = \"1\"\n")
                .is_empty()
        );
    }

    #[test]
    fn unsafe_code_is_found_but_not_lint_names_or_comments() {
        assert_eq!(unsafe_line("fn f() {\n    let x = unsafe { g() };\n}\n"), Some(2));
        assert_eq!(unsafe_line("pub unsafe fn f() {}\n"), Some(1));
        assert_eq!(unsafe_line("unsafe impl Send for X {}\n"), Some(1));
        assert_eq!(
            unsafe_line("#![forbid(unsafe_code)]\n// unsafe { here }\nfn unsafe_thing() {}\n"),
            None
        );
        assert_eq!(unsafe_line("let s = \"not_unsafe\";\n"), None);
        assert_eq!(unsafe_line("let s = \"unsafe { \\\" }\"; // unsafe {\n"), None);
    }

    #[test]
    fn files_are_judged_by_their_lines_before_the_tests() {
        let long = "//! x\n".to_owned()
            + &"fn f() {}\n".repeat(MAX_LINES)
            + "#[cfg(test)]\nmod tests {}\n";
        assert_eq!(non_test_lines(&long), MAX_LINES + 1);
        assert!(check_file("vz-x/src/a.rs", &long).iter().any(|p| p.contains("split it")));
        let tests_heavy =
            "//! x\nfn f() {}\n#[cfg(test)]\nmod tests {\n".to_owned() + &"\n".repeat(2000) + "}\n";
        assert!(check_file("vz-x/src/a.rs", &tests_heavy).is_empty());
        let problems =
            check_file("vz-x/src/a.rs", "fn f() { unsafe { g() } }\n#![allow(missing_docs)]\n");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(check_file("vz-x/src/sys.rs", "//! sys\nfn f() { unsafe { g() } }\n").is_empty());
    }

    #[test]
    fn lints_inheritance_is_read() {
        assert!(inherits_lints("[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"));
        assert!(!inherits_lints("[package]\nworkspace = true\n[lints.rust]\nx = 1\n"));
    }

    #[test]
    fn this_repository_is_tidy() {
        run(&crate::sh::project_root()).unwrap();
    }
}
