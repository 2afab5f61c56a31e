//! sshd's effective global settings, computed the way sshd computes them: the main file, with
//! each `Include` expanded in place (globs in lexical order, relative paths under `/etc/ssh`),
//! keywords case-insensitive, the FIRST value of a keyword wins, and lines inside `Match`
//! blocks do not count for the global value (a `Match` lasts to the end of its file).

use std::collections::HashMap;

use super::scan::{Content, Image, Kind};
use super::{Rule, Violation};

const MAIN: &str = "etc/ssh/sshd_config";
/// sshd's own limit on nested includes.
const MAX_DEPTH: usize = 16;

/// At most this many configuration files are read for one evaluation: `Include` globs that
/// match several files, nested 16 deep, would otherwise fan out exponentially (found by the
/// fuzzer). Past it the effective settings cannot be proven, which is a violation.
const MAX_FILES: usize = 256;

/// One setting's effective value and where it came from.
#[derive(Debug, Clone)]
struct Setting {
    value: String,
    source: String,
}

struct Effective<'a> {
    image: &'a Image,
    settings: HashMap<&'static str, Setting>,
    problems: Vec<String>,
    /// Configuration files read so far (bounded by [`MAX_FILES`]).
    files_read: usize,
}

/// The keywords the contract looks at, with the aliases sshd maps onto them.
fn canonical(keyword: &str) -> Option<&'static str> {
    match keyword {
        "passwordauthentication" => Some("PasswordAuthentication"),
        "kbdinteractiveauthentication" | "challengeresponseauthentication" => {
            Some("KbdInteractiveAuthentication")
        }
        "permitrootlogin" => Some("PermitRootLogin"),
        _ => None,
    }
}

/// Split a config line into keyword and arguments like sshd's `argv_split`: whitespace, an
/// optional `=` after the keyword, double quotes around an argument.
fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '"' {
                    closed = true;
                    break;
                }
                arg.push(c);
            }
            if !closed {
                // sshd rejects an unterminated quote; never read it as a clean value.
                arg.insert(0, '"');
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
    Some((keyword, args))
}

/// glob(3) on one path component: `*`, `?`, `[…]` (with `!`/`^` and ranges); a leading `.`
/// only matches literally.
fn glob_component(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    glob_match(pattern, name)
}

/// Match `n` against `p` without recursion: one backtracking point (the last `*`), so the
/// time is at most `p.len() * n.len()` steps whatever the number of `*` (a pattern of many
/// `*` cannot make it exponential).
fn glob_match(p: &[u8], n: &[u8]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index it absorbed to).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ni));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match class(p, pi, n[ni]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (n[ni] == b'[').then_some(pi + 1),
            },
            Some(&b) => (b == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((after, absorbed))) => {
                pi = after;
                ni = absorbed + 1;
                star = Some((after, absorbed + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// The bracket expression at `p[at]` (`[…]`, with `!`/`^` and ranges) applied to `c`:
/// (matched, index after the `]`), or `None` when there is no closing `]` (then `[` is a
/// literal).
fn class(p: &[u8], at: usize, c: u8) -> Option<(bool, usize)> {
    let close = p
        .iter()
        .skip(at + 2)
        .position(|&b| b == b']')
        .map(|i| i + at + 2)?;
    let mut set = &p[at + 1..close];
    let negate = matches!(set.first(), Some(b'!' | b'^'));
    if negate {
        set = &set[1..];
    }
    let mut hit = false;
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == b'-' {
            hit |= set[i] <= c && c <= set[i + 2];
            i += 3;
        } else {
            hit |= set[i] == c;
            i += 1;
        }
    }
    Some((hit != negate, close + 1))
}

impl<'a> Effective<'a> {
    fn parse(&mut self, path: &str, in_match: bool, depth: usize) {
        self.files_read += 1;
        if self.files_read > MAX_FILES {
            if self.files_read == MAX_FILES + 1 {
                self.problems.push(format!(
                    "/{path}: the Includes name more than {MAX_FILES} files; the effective settings cannot be evaluated"
                ));
            }
            return;
        }
        let text = match self.image.content(path) {
            Content::Text(t) => t,
            Content::Missing => {
                self.problems.push(format!("/{path} is missing"));
                return;
            }
            Content::NotAFile(r) => {
                self.problems
                    .push(format!("/{path} resolves to /{r}, not a file"));
                return;
            }
            Content::NotKept(r) => {
                self.problems.push(format!(
                    "/{path} resolves to /{r}, too big or outside /etc to inspect"
                ));
                return;
            }
        };
        let mut in_match = in_match;
        for (n, line) in text.lines().enumerate() {
            let Some((keyword, args)) = split_line(line) else {
                continue;
            };
            match keyword.as_str() {
                "match" => in_match = true,
                "include" => {
                    if depth >= MAX_DEPTH {
                        self.problems
                            .push(format!("/{path}:{}: Include nested too deeply", n + 1));
                        continue;
                    }
                    for pattern in args {
                        for file in self.expand(&pattern) {
                            self.parse(&file, in_match, depth + 1);
                        }
                    }
                }
                _ => {
                    if let (false, Some(key), Some(value)) =
                        (in_match, canonical(&keyword), args.first())
                    {
                        self.settings.entry(key).or_insert_with(|| Setting {
                            value: value.to_ascii_lowercase(),
                            source: format!("/{path}:{}", n + 1),
                        });
                    }
                }
            }
        }
    }

    /// The archive paths an `Include` argument names, in lexical order.
    fn expand(&self, pattern: &str) -> Vec<String> {
        let full = match pattern.strip_prefix('/') {
            Some(abs) => abs.to_string(),
            None => format!("etc/ssh/{pattern}"),
        };
        // By component, as the kernel resolves the path glob(3) walks: `//` and `.` vanish,
        // `..` climbs.
        let mut parts: Vec<&str> = Vec::new();
        for c in full.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                _ => parts.push(c),
            }
        }
        let mut found: Vec<String> = self
            .image
            .nodes
            .iter()
            .filter(|(p, node)| {
                !matches!(node.kind, Kind::Dir) && {
                    let names: Vec<&str> = p.split('/').collect();
                    names.len() == parts.len()
                        && names
                            .iter()
                            .zip(&parts)
                            .all(|(n, g)| glob_component(g.as_bytes(), n.as_bytes()))
                }
            })
            .map(|(p, _)| p.clone())
            .collect();
        found.sort();
        found
    }
}

/// Check the effective global sshd settings.
pub(super) fn check(image: &Image, out: &mut Vec<Violation>) {
    let mut eff = Effective {
        image,
        settings: HashMap::new(),
        problems: Vec::new(),
        files_read: 0,
    };
    eff.parse(MAIN, false, 0);
    for problem in eff.problems {
        out.push(Violation {
            rule: Rule::SshdConfig,
            path: format!("/{MAIN}"),
            detail: format!("cannot compute sshd's effective settings: {problem}"),
        });
    }
    let wanted: [(&str, &str, &[&str]); 3] = [
        ("PasswordAuthentication", "yes", &["no"]),
        ("KbdInteractiveAuthentication", "yes", &["no"]),
        (
            "PermitRootLogin",
            "prohibit-password",
            &["prohibit-password", "without-password"],
        ),
    ];
    for (key, default, allowed) in wanted {
        let (value, source) = match eff.settings.get(key) {
            Some(s) => (s.value.as_str(), s.source.clone()),
            None => (default, format!("/{MAIN}")),
        };
        if !allowed.contains(&value) {
            let origin = if eff.settings.contains_key(key) {
                format!("set at {source}, the first value sshd reads")
            } else {
                "sshd's default: not set anywhere".to_string()
            };
            out.push(Violation {
                rule: Rule::SshdConfig,
                path: source
                    .rsplit_once(':')
                    .map(|(p, _)| p.to_string())
                    .unwrap_or(source.clone()),
                detail: format!(
                    "effective {key} is {value} ({origin}); the contract requires {}",
                    allowed.join(" or ")
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_sshd() {
        assert_eq!(
            split_line("  PasswordAuthentication=no # c"),
            Some(("passwordauthentication".into(), vec!["no".into()]))
        );
        assert_eq!(
            split_line("Include \"/etc/ssh/a b.conf\" x"),
            Some((
                "include".into(),
                vec!["/etc/ssh/a b.conf".into(), "x".into()]
            ))
        );
        assert_eq!(split_line("# PasswordAuthentication yes"), None);
        assert_eq!(
            split_line("PasswordAuthentication \"no"),
            Some(("passwordauthentication".into(), vec!["\"no".into()]))
        );
    }

    #[test]
    fn globs_like_glob3() {
        assert!(glob_component(b"*.conf", b"00-golden.conf"));
        assert!(!glob_component(b"*.conf", b".hidden.conf"));
        assert!(!glob_component(b"*.conf", b"x.conf.bak"));
        assert!(glob_component(b"[0-4]?-*", b"10-a"));
        assert!(!glob_component(b"[!0-4]*", b"1"));
        assert!(glob_component(b"*a*b*c", b"xxaxxbxxc"));
        assert!(!glob_component(b"*a*b*c", b"xxaxxbxxcd"));
        assert!(glob_component(b"[abc", b"[abc"));
    }

    #[test]
    fn many_stars_stay_linear() {
        // Exponential in a recursive matcher: 40 `*` against 200 bytes that never match.
        let pattern = "*a".repeat(40) + "b";
        let name = "a".repeat(200);
        assert!(!glob_component(pattern.as_bytes(), name.as_bytes()));
    }
}
