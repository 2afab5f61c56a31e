//! The code's structure, checked: the library never prints (only `src/cli/` and `main.rs`
//! do), never depends on the command-line parser, and no two sibling modules of `src/` import
//! each other, directly or around a circle.
//!
//! These read the source text: a `use`, a `crate::…` path or a `super::…` path is an import.
//! Test modules (from `#[cfg(test)]` to the end of a file) are not part of the library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's source files, as (module path, text without its test module).
fn library_files() -> Vec<(Vec<String>, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((module, path, text));
        }
    }
    assert!(
        out.len() > 20,
        "found only {} source files in {}",
        out.len(),
        src.display()
    );
    out.sort();
    out
}

/// The binary's own files: the only ones that may print and parse arguments.
fn is_binary(module: &[String]) -> bool {
    module.first().is_some_and(|m| m == "cli" || m == "main")
}

/// Lines without their `//` comments (doc comments mention `println!` and `stderr` freely).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| {
        let code = match l.find("//") {
            Some(c) if !l[..c].contains('"') => &l[..c],
            _ => l,
        };
        (i + 1, code)
    })
}

#[test]
fn only_the_cli_writes_to_stdout_or_stderr() {
    // Two places write to a standard stream on purpose, each for a process that is not the
    // user's terminal session:
    // - the stage child (`ingot __stage`): its stderr is the pipe to the parent, which relays
    //   every line through the library's `Reporter`; the worker also moves its fds around;
    // - the test pause of `INGOT_TEST_PAUSE_AT` (a test-only hook, documented as such).
    let allowed: BTreeSet<&str> = ["stage/child.rs", "signal_hold.rs"].into();
    let forbidden = [
        "println!",
        "eprintln!",
        "print!(",
        "eprint!(",
        "dbg!(",
        "io::stdout()",
        "io::stderr()",
    ];
    let mut found = Vec::new();
    for (module, path, text) in library_files() {
        let rel = path.to_string_lossy();
        let rel = rel.split("/src/").last().unwrap_or_default().to_string();
        if is_binary(&module) || allowed.contains(rel.as_str()) {
            continue;
        }
        for (n, line) in code_lines(&text) {
            if let Some(f) = forbidden.iter().find(|f| line.contains(*f)) {
                found.push(format!("src/{rel}:{n}: {f} in `{}`", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "library code writes to a standard stream (return a value, or report through \
         progress::Reporter, and let src/cli/ print it):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_library_does_not_depend_on_the_command_line_parser() {
    let mut found = Vec::new();
    for (module, path, text) in library_files() {
        if is_binary(&module) {
            continue;
        }
        for (n, line) in code_lines(&text) {
            if line.contains("clap::") || line.contains("clap ::") {
                found.push(format!("{}:{n}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "library code uses clap (give the type FromStr/Display and parse it in main.rs):\n{}",
        found.join("\n")
    );
}

/// Every module path the text refers to through `crate::`, `super::` or a `use` of either,
/// with `{…}` groups expanded (`use super::{Rule, sshd}` names `super::Rule` and `super::sshd`).
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let parent = |m: &[String]| m[..m.len().saturating_sub(1)].to_vec();
    let mut out = BTreeSet::new();
    // `use` items span lines: read the text as one string.
    let code: String = code_lines(text)
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    loop {
        let i = match (rest.find("crate::"), rest.find("super::")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let (mut base, start) = if rest[i..].starts_with("crate::") {
            (Vec::new(), i + "crate::".len())
        } else {
            (parent(module), i + "super::".len())
        };
        let mut s = &rest[start..];
        while let Some(t) = s.strip_prefix("super::") {
            base = parent(&base);
            s = t;
        }
        parse_path(s, base, &mut out);
        rest = &rest[start..];
    }
    out
}

/// Parse `a::b::{c, d::e}` after a known prefix `base`, adding each full path to `out`;
/// returns how many bytes it read.
fn parse_path(s: &str, base: Vec<String>, out: &mut BTreeSet<Vec<String>>) -> usize {
    let ident = |t: &str| -> usize {
        t.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .count()
    };
    let mut full = base;
    let mut pos = 0;
    loop {
        if s[pos..].starts_with('{') {
            pos += 1;
            // Items until the matching `}`.
            loop {
                let inner = &s[pos..];
                let t = inner.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
                pos += inner.len() - t.len();
                if t.is_empty() {
                    return pos;
                }
                if t.starts_with('}') {
                    return pos + 1;
                }
                let n = parse_path(t, full.clone(), out);
                // Not a path (`*`): skip one character.
                pos += n.max(t.chars().next().map_or(1, char::len_utf8));
                let inner = &s[pos..];
                let t = inner.trim_start();
                if let Some(alias) = t.strip_prefix("as ") {
                    let alias = alias.trim_start();
                    pos += inner.len() - alias.len() + ident(alias);
                }
            }
        }
        let n = ident(&s[pos..]);
        if n == 0 {
            if !full.is_empty() {
                out.insert(full);
            }
            return pos;
        }
        let seg = &s[pos..pos + n];
        pos += n;
        if seg != "self" {
            full.push(seg.to_string());
        }
        match s[pos..].strip_prefix("::") {
            Some(_) => pos += 2,
            None => {
                out.insert(full);
                return pos;
            }
        }
    }
}

#[test]
fn sibling_modules_do_not_import_each_other_in_a_circle() {
    let files = library_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _, _)| m.clone()).collect();
    // The longest known module that is a prefix of `path`.
    let owner = |path: &[String]| -> Option<Vec<String>> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    // Edges between siblings: for A → B, the children of their deepest common ancestor that
    // hold A and B (a module using its own parent or child is not a cycle of siblings).
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, path, text) in &files {
        if is_binary(module) {
            continue;
        }
        let _ = path;
        for target in references(module, text) {
            let Some(target) = owner(&target) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue;
            }
            let a = module[..=common].to_vec();
            let b = target[..=common].to_vec();
            edges.entry(a).or_default().insert(b);
        }
    }
    // Any cycle, found by depth-first search.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, &edges, &mut Vec::new(), &mut done) {
            cycles.push(
                c.iter()
                    .map(|m| m.join("::"))
                    .collect::<Vec<_>>()
                    .join(" -> "),
            );
        }
    }
    if std::env::var_os("INGOT_DEBUG_EDGES").is_some() {
        for (a, bs) in &edges {
            eprintln!(
                "{} -> {:?}",
                a.join("::"),
                bs.iter().map(|b| b.join("::")).collect::<Vec<_>>()
            );
        }
    }
    assert!(
        edges.len() > 5,
        "the import graph looks empty ({} modules with sibling imports): is the parser broken?",
        edges.len()
    );
    assert!(
        cycles.is_empty(),
        "modules that import each other:\n{}",
        cycles.join("\n")
    );
}
