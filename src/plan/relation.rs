//! Debian relationship fields (`Depends`, `Pre-Depends`, `Provides`, `Conflicts`, `Breaks`)
//! parsed into OR groups of [`Relation`]s, and version constraints checked with `debversion`.
//!
//! Only syntax lives here; which package satisfies a relation is the resolver's business.

use std::cmp::Ordering;

use debversion::Version;

/// A version operator of a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Does `candidate OP wanted` hold?
    pub(crate) fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        let ord = candidate.cmp(wanted);
        match self {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }
}

/// The architecture qualifier after the package name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArchQualifier {
    /// No qualifier: the package's own (native) architecture.
    None,
    /// `:any`: any architecture, satisfied only by `Multi-Arch: allowed` packages.
    Any,
    /// `:native`.
    Native,
    /// `:<arch>`.
    Arch(String),
}

/// One alternative of a relationship: `name[:arch] [(op version)]`.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// The package (or virtual package) named.
    pub name: String,
    /// The architecture qualifier.
    pub arch: ArchQualifier,
    /// The version constraint, if any.
    pub constraint: Option<(Op, Version)>,
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        match &self.arch {
            ArchQualifier::None => {}
            ArchQualifier::Any => f.write_str(":any")?,
            ArchQualifier::Native => f.write_str(":native")?,
            ArchQualifier::Arch(a) => write!(f, ":{a}")?,
        }
        if let Some((op, v)) = &self.constraint {
            let op = match op {
                Op::Lt => "<<",
                Op::Le => "<=",
                Op::Eq => "=",
                Op::Ge => ">=",
                Op::Gt => ">>",
            };
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// An OR group: satisfied when any alternative is.
pub(crate) type Group = Vec<Relation>;

/// Show an OR group as Debian writes it: `a | b (>= 1)`.
pub(crate) fn group_text(group: &Group) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parse a relationship field into OR groups. Architecture restrictions (`[amd64]`) and build
/// profiles (`<!nocheck>`) do not occur in binary indexes; they are accepted and ignored.
pub(crate) fn parse_relations(field: &str) -> Result<Vec<Group>, String> {
    let mut groups = Vec::new();
    for group_text in field.split(',') {
        if group_text.trim().is_empty() {
            continue;
        }
        let mut group = Vec::new();
        for alt in group_text.split('|') {
            group.push(parse_one(alt)?);
        }
        groups.push(group);
    }
    Ok(groups)
}

fn parse_one(text: &str) -> Result<Relation, String> {
    // Drop `[arch list]` and `<profiles>`.
    let mut cleaned = String::with_capacity(text.len());
    let mut depth_sq = 0u32;
    let mut depth_angle = 0u32;
    let mut in_parens = false;
    for c in text.chars() {
        match c {
            '(' if depth_sq == 0 && depth_angle == 0 => {
                in_parens = true;
                cleaned.push(c);
            }
            ')' if in_parens => {
                in_parens = false;
                cleaned.push(c);
            }
            '[' if !in_parens => depth_sq += 1,
            ']' if !in_parens => depth_sq = depth_sq.saturating_sub(1),
            '<' if !in_parens && depth_sq == 0 => depth_angle += 1,
            '>' if depth_angle > 0 => depth_angle -= 1,
            _ if depth_sq > 0 || depth_angle > 0 => {}
            _ => cleaned.push(c),
        }
    }
    let s = cleaned.trim();
    if s.is_empty() {
        return Err(format!("empty alternative in {:?}", text.trim()));
    }
    let (head, constraint) = match s.find('(') {
        Some(open) => {
            let close = s[open..]
                .find(')')
                .map(|c| open + c)
                .ok_or_else(|| format!("unclosed '(' in {s:?}"))?;
            if !s[close + 1..].trim().is_empty() {
                return Err(format!("unexpected text after ')' in {s:?}"));
            }
            (
                s[..open].trim(),
                Some(parse_constraint(&s[open + 1..close], s)?),
            )
        }
        None => (s, None),
    };
    if head.contains(char::is_whitespace) {
        return Err(format!("malformed relation {s:?}"));
    }
    let (name, arch) = match head.split_once(':') {
        Some((n, "any")) => (n, ArchQualifier::Any),
        Some((n, "native")) => (n, ArchQualifier::Native),
        Some((n, a)) if !a.is_empty() => (n, ArchQualifier::Arch(a.to_string())),
        Some(_) => return Err(format!("empty architecture qualifier in {s:?}")),
        None => (head, ArchQualifier::None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("invalid package name {name:?} in {s:?}"));
    }
    Ok(Relation {
        name: name.to_string(),
        arch,
        constraint,
    })
}

fn parse_constraint(inner: &str, whole: &str) -> Result<(Op, Version), String> {
    let inner = inner.trim();
    let (op, rest) = if let Some(r) = inner.strip_prefix("<<") {
        (Op::Lt, r)
    } else if let Some(r) = inner.strip_prefix("<=") {
        (Op::Le, r)
    } else if let Some(r) = inner.strip_prefix(">=") {
        (Op::Ge, r)
    } else if let Some(r) = inner.strip_prefix(">>") {
        (Op::Gt, r)
    } else if let Some(r) = inner.strip_prefix('=') {
        (Op::Eq, r)
    } else if let Some(r) = inner.strip_prefix('<') {
        (Op::Le, r)
    } else if let Some(r) = inner.strip_prefix('>') {
        (Op::Ge, r)
    } else {
        return Err(format!("missing version operator in {whole:?}"));
    };
    let version = parse_version(rest.trim()).map_err(|e| format!("{e} in {whole:?}"))?;
    Ok((op, version))
}

/// One `Provides` entry: the name and, for `name (= version)`, the version text. Cheaper than
/// [`parse_relations`]: the version is only checked for shape, not parsed.
pub(crate) fn parse_provide(entry: &str) -> Result<(&str, Option<&str>), String> {
    let entry = entry.trim();
    let (name, version) = match entry.split_once('(') {
        None => (entry, None),
        Some((name, rest)) => {
            let inner = rest
                .trim_end()
                .strip_suffix(')')
                .ok_or_else(|| format!("unclosed '(' in {entry:?}"))?;
            let version = inner
                .trim()
                .strip_prefix('=')
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
                .ok_or_else(|| format!("only `(= version)` is allowed in Provides: {entry:?}"))?;
            (name.trim(), Some(version))
        }
    };
    let name = name.split_once(':').map_or(name, |(n, _)| n);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("invalid package name in Provides entry {entry:?}"));
    }
    Ok((name, version))
}

/// Parse a Debian version; the error names the text.
pub(crate) fn parse_version(text: &str) -> Result<Version, String> {
    text.parse::<Version>()
        .map_err(|e| format!("invalid version {text:?}: {e}"))
}

/// The package names a relationship field mentions, in order, cheaply (no version parsing).
/// Names qualified `:any` are skipped: apt files them under a separate pseudo package.
pub(crate) fn mentioned_names(field: &str) -> impl Iterator<Item = &str> {
    // Byte scanning: this runs over every relationship field of every stanza.
    let bytes = field.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < bytes.len() {
            while pos < bytes.len() && matches!(bytes[pos], b' ' | b'\t' | b'\n' | b',' | b'|') {
                pos += 1;
            }
            let start = pos;
            while pos < bytes.len()
                && !matches!(
                    bytes[pos],
                    b' ' | b'\t' | b'\n' | b',' | b'|' | b'(' | b'[' | b'<' | b':'
                )
            {
                pos += 1;
            }
            let name = &field[start..pos];
            let any = bytes[pos..].starts_with(b":any");
            while pos < bytes.len() && !matches!(bytes[pos], b',' | b'|') {
                pos += 1;
            }
            if !any && !name.is_empty() {
                return Some(name);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_operators_and_qualifiers() {
        let g = parse_relations(
            "libc6 (>= 2.34), a | b:any (<< 2:1.0-1) | c:native, d (= 1), e (<= 1), f (>> 1), g:amd64 [amd64] <!nocheck>, h (<< 3) <!stage1>",
        )
        .unwrap();
        assert_eq!(g.len(), 7);
        assert_eq!(g[6][0].constraint.as_ref().unwrap().0, Op::Lt);
        assert_eq!(g[0][0].name, "libc6");
        assert_eq!(g[0][0].constraint.as_ref().unwrap().0, Op::Ge);
        assert_eq!(g[1].len(), 3);
        assert_eq!(g[1][1].arch, ArchQualifier::Any);
        assert_eq!(g[1][1].constraint.as_ref().unwrap().0, Op::Lt);
        assert_eq!(g[1][2].arch, ArchQualifier::Native);
        assert_eq!(g[2][0].constraint.as_ref().unwrap().0, Op::Eq);
        assert_eq!(g[3][0].constraint.as_ref().unwrap().0, Op::Le);
        assert_eq!(g[4][0].constraint.as_ref().unwrap().0, Op::Gt);
        assert_eq!(g[5][0].arch, ArchQualifier::Arch("amd64".into()));
        assert_eq!(group_text(&g[1]), "a | b:any (<< 2:1.0-1) | c:native");
    }

    #[test]
    fn operators_follow_dpkg() {
        let v = |s: &str| parse_version(s).unwrap();
        assert!(Op::Lt.holds(&v("1.0"), &v("1.0.1")));
        assert!(!Op::Lt.holds(&v("1.0"), &v("1.00")));
        assert!(Op::Eq.holds(&v("1.0"), &v("1.00")));
        assert!(Op::Le.holds(&v("1.0~rc1"), &v("1.0")));
        assert!(Op::Gt.holds(&v("1:0.1"), &v("9.9")));
        assert!(Op::Ge.holds(&v("2.39-0ubuntu8.12"), &v("2.39-0ubuntu8")));
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_relations("a (>= ").is_err());
        assert!(parse_relations("a (~ 1)").is_err());
        assert!(parse_relations("a b").is_err());
        assert!(parse_relations("a | , b").is_err());
        assert!(parse_relations("a:").is_err());
    }

    #[test]
    fn mentioned_names_skip_any() {
        let names: Vec<_> = mentioned_names("a (>= 1) | b:any, c:amd64, d [x]").collect();
        assert_eq!(names, ["a", "c", "d"]);
        let names: Vec<_> = mentioned_names(" x:any (>= 2),y|z:native ,").collect();
        assert_eq!(names, ["y", "z"]);
        assert_eq!(mentioned_names("").count(), 0);
    }
}
