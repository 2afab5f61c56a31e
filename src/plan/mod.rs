//! The plan stage: choose the package set the way debootstrap/mmdebstrap (through apt) would.
//!
//! Selection is `Essential: yes` (+ `Priority: required` + `apt` for minbase) + the recipe's
//! includes; resolution closes over `Pre-Depends` and `Depends` with alternatives, versioned
//! constraints, `Provides`, architecture qualifiers, and honours `Conflicts`/`Breaks`. When a
//! package is in several suites the highest version wins. This stage never downloads and never
//! reads files: it works on the stanzas the archive stage verified.
//!
//! * `relation`: relationship-field syntax and version constraints;
//! * `universe`: candidates, `Provides`, apt's cache order;
//! * `marker`: apt's `MarkInstall` walk, replayed (why greedy and not SAT is explained there);
//! * this file: mmdebstrap's two apt runs, the final checks and the [`Plan`].

mod marker;
mod relation;
mod universe;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use self::marker::{Marker, Reason};
use self::relation::{Group, group_text};
use self::universe::{PkgId, Universe};
use crate::archive::BinaryPackage;
use crate::recipe::Variant;

/// What the user asked for, before resolution.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The base set.
    pub variant: Variant,
    /// Extra packages (`name` or `name=version`).
    pub include: Vec<String>,
    /// The target architecture (`amd64`).
    pub architecture: String,
}

impl Selection {
    /// What `recipe` asks for.
    pub fn of(recipe: &crate::recipe::Recipe) -> Selection {
        Selection {
            variant: recipe.packages.variant,
            include: recipe.packages.include.clone(),
            architecture: recipe.source.architecture.clone(),
        }
    }
}

/// One package of the resolved set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedPackage {
    /// Package name.
    pub name: String,
    /// Version chosen.
    pub version: String,
    /// Architecture (`amd64` or `all`).
    pub architecture: String,
    /// `Essential: yes` (installed in the first round).
    pub essential: bool,
    /// `Priority`, if given.
    pub priority: Option<String>,
    /// Size of the `.deb`.
    pub size: u64,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
    /// Pool path relative to the mirror.
    pub filename: String,
    /// Archive root URL it comes from.
    pub mirror: String,
    /// Suite whose index listed it.
    pub suite: String,
    /// `Source` package name (the package's own name when absent).
    pub source: String,
    /// Names of selected packages that satisfy this package's `Pre-Depends`.
    pub pre_depends_on: Vec<String>,
    /// Names of selected packages that satisfy this package's `Depends`.
    pub depends_on: Vec<String>,
}

impl PlannedPackage {
    /// The full download URL of the `.deb`.
    pub fn url(&self) -> String {
        crate::net::join_url(&self.mirror, &self.filename)
    }
}

/// The resolved set, sorted by name.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Every package to install, sorted by name.
    pub packages: Vec<PlannedPackage>,
    /// Packages apt would mark automatically installed (pulled in as dependencies by the
    /// second run), sorted by name.
    pub auto_installed: Vec<String>,
}

impl Plan {
    /// Names of the first installation round, as debootstrap and mmdebstrap form it: every
    /// `Essential: yes` package and everything those need through `Pre-Depends`/`Depends`.
    pub fn essential_closure(&self) -> std::collections::BTreeSet<String> {
        let by_name: std::collections::HashMap<&str, &PlannedPackage> =
            self.packages.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<&str> = self
            .packages
            .iter()
            .filter(|p| p.essential)
            .map(|p| p.name.as_str())
            .collect();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.to_string()) {
                continue;
            }
            if let Some(p) = by_name.get(name) {
                todo.extend(
                    p.pre_depends_on
                        .iter()
                        .chain(&p.depends_on)
                        .map(String::as_str),
                );
            }
        }
        seen
    }

    /// `var/lib/apt/extended_states` as apt writes it after installing this plan, so that
    /// `apt autoremove` in the image knows which packages came in as dependencies.
    pub fn apt_extended_states(&self, architecture: &str) -> String {
        self.auto_installed
            .iter()
            .map(|name| {
                format!("Package: {name}\nArchitecture: {architecture}\nAuto-Installed: 1\n\n")
            })
            .collect()
    }

    /// Total download size in bytes.
    pub fn total_size(&self) -> u64 {
        self.packages.iter().map(|p| p.size).sum()
    }
}

/// Why no installable set exists; names the package and the chain that led to it.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An include (or `apt`) is in no index.
    #[error(
        "package {name:?} is not in any suite/component of the archive (asked for by {requested_by})"
    )]
    UnknownPackage {
        /// The missing name.
        name: String,
        /// Who asked (`recipe include`, `variant minbase`, …).
        requested_by: String,
    },
    /// A dependency cannot be satisfied.
    #[error("unsatisfiable dependency {dependency:?} of {chain}")]
    Unsatisfiable {
        /// The dependency as written.
        dependency: String,
        /// `include openssh-server → openssh-client → libfoo (>= 3)`.
        chain: String,
    },
    /// Two selected packages conflict (Conflicts or Breaks).
    #[error("{package} {relation} {target}, but both are required ({chain})")]
    Conflict {
        /// The package declaring the relation.
        package: String,
        /// `Conflicts` or `Breaks`.
        relation: String,
        /// The other package.
        target: String,
        /// How the package came in.
        chain: String,
    },
    /// A dependency field could not be parsed.
    #[error("package {package}: cannot parse {field}: {message}")]
    BadField {
        /// The package.
        package: String,
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
}

/// Resolve `selection` against every stanza of every suite.
///
/// The result is the set apt installs for `mmdebstrap --variant=<variant>
/// --include=<includes>` with the same suites, in mmdebstrap's two apt runs:
///
/// 1. `apt-get install` of every package that is `Essential: yes` in the *first* suite's index
///    (mmdebstrap's `SUITE` argument; `universe` must list the suites in recipe order);
/// 2. with that set installed, `apt-get install` of the includes and, for `minbase`, `apt` and
///    every package that has `Priority: required` in the first suite and is not essential.
///
/// Candidates are the highest version of each name across all suites (apt pins every suite at
/// 500). The private `marker` module replays apt's choices.
pub fn resolve(universe: &[BinaryPackage], selection: &Selection) -> Result<Plan, PlanError> {
    // apt's walk is recursive (as deep as 3 000 levels before it gives up); a dedicated thread
    // with a large stack keeps a pathological chain from overflowing a small caller stack. Only
    // touched pages are committed, and the thread is joined before returning.
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("ingot-resolve".into())
            .stack_size(RESOLVER_STACK)
            .spawn_scoped(scope, || resolve_on_this_thread(universe, selection))
        {
            Ok(handle) => match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(_) => resolve_on_this_thread(universe, selection),
        }
    })
}

/// Stack for the resolver thread: room for apt's 3 000 levels even in a debug build.
const RESOLVER_STACK: usize = 256 << 20;

fn resolve_on_this_thread(
    universe: &[BinaryPackage],
    selection: &Selection,
) -> Result<Plan, PlanError> {
    let native = selection.architecture.as_str();
    let mut pins: HashMap<String, String> = HashMap::new();
    let mut includes: Vec<&str> = Vec::new();
    for inc in &selection.include {
        let (name, version) = match inc.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (inc.trim(), None),
        };
        if name.is_empty() || version.is_some_and(str::is_empty) {
            return Err(PlanError::UnknownPackage {
                name: inc.clone(),
                requested_by: "recipe include (expected `name` or `name=version`)".into(),
            });
        }
        if let Some(v) = version {
            pins.insert(name.to_string(), v.to_string());
        }
        includes.push(name);
    }

    let u = Universe::build(universe, native, &pins)?;
    for (name, version) in &pins {
        let found = u
            .id(name)
            .and_then(|id| u.candidate(id))
            .map(|p| p.version.as_str());
        if found != Some(version.as_str()) {
            return Err(PlanError::UnknownPackage {
                name: format!("{name}={version}"),
                requested_by: "recipe include".into(),
            });
        }
    }

    let usable = |p: &BinaryPackage| p.architecture == native || p.architecture == "all";
    let base_suite = universe.first().map(|p| p.suite.as_str()).unwrap_or("");
    let in_base = || {
        universe
            .iter()
            .filter(move |p| p.suite == base_suite && usable(p))
    };
    let mut marker = Marker::new(&u, u.len());

    // Run 1: the Essential set; a pattern's matches come in cache order.
    let essential_label = format!("Essential: yes in {base_suite}");
    let mut essential_names: HashSet<&str> = HashSet::new();
    let mut run1 = Vec::new();
    for p in in_base() {
        if p.essential
            && let Some(id) = u.id(&p.name)
        {
            essential_names.insert(&p.name);
            run1.push((id, essential_label.clone()));
        }
    }
    run1.sort_by_key(|(id, _)| *id);
    marker.run(&run1)?;
    marker.commit();
    // mmdebstrap installs run 1 with dpkg, so apt keeps no mark for it; in run 2 apt marks
    // what it pulled in as dependencies "Auto-Installed" (var/lib/apt/extended_states).
    let after_run1: HashSet<PkgId> = (0..u.len() as PkgId)
        .filter(|&id| marker.selected(id))
        .collect();

    // Run 2, in mmdebstrap's command-line order: `--include=apt,<includes>` (minbase), then
    // the `Priority: required` pattern.
    let mut run2 = Vec::new();
    if selection.variant == Variant::Minbase && !includes.contains(&"apt") {
        run2.push((
            request_id(&u, "apt", "variant minbase")?,
            "variant minbase (apt)".to_string(),
        ));
    }
    for name in &includes {
        run2.push((
            request_id(&u, name, "recipe include")?,
            format!("include {name}"),
        ));
    }
    if selection.variant == Variant::Minbase {
        let required_label = format!("Priority: required in {base_suite}");
        let mut required = Vec::new();
        for p in in_base() {
            if p.priority.as_deref() == Some("required")
                && !essential_names.contains(p.name.as_str())
                && let Some(id) = u.id(&p.name)
            {
                required.push((id, required_label.clone()));
            }
        }
        required.sort_by_key(|(id, _)| *id);
        run2.extend(required);
    }
    marker.run(&run2)?;

    let selected: Vec<PkgId> = (0..u.len() as PkgId)
        .filter(|&id| marker.selected(id))
        .collect();
    check(&marker, &selected)?;
    let requested: HashSet<PkgId> = run2.iter().map(|(id, _)| *id).collect();
    // Sorted by name: apt writes its hash-table order, which carries no meaning (apt reads the
    // file order-independently) and which we do not reproduce.
    let mut auto_installed: Vec<String> = selected
        .iter()
        .filter(|id| !after_run1.contains(id) && !requested.contains(id))
        .map(|&id| u.name(id).to_string())
        .collect();
    auto_installed.sort();

    let mut packages = Vec::with_capacity(selected.len());
    for &id in &selected {
        let Some(p) = u.candidate(id) else { continue };
        let mut pre_depends_on = Vec::new();
        let mut depends_on = Vec::new();
        for (pre, group) in &u.relations(id)?.depends {
            let target = if *pre {
                &mut pre_depends_on
            } else {
                &mut depends_on
            };
            for rel in group {
                let sats = marker.selected_satisfiers(rel)?;
                if sats.is_empty() {
                    continue;
                }
                for s in sats {
                    let name = u.name(s).to_string();
                    if s != id && !target.contains(&name) {
                        target.push(name);
                    }
                }
                break;
            }
        }
        pre_depends_on.sort();
        depends_on.sort();
        packages.push(PlannedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            essential: p.essential,
            priority: p.priority.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
            filename: p.filename.clone(),
            mirror: p.mirror.clone(),
            suite: p.suite.clone(),
            source: p.source.clone().unwrap_or_else(|| p.name.clone()),
            pre_depends_on,
            depends_on,
        });
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan {
        packages,
        auto_installed,
    })
}

/// The package apt installs for a requested name: the real package, or the only provider of a
/// virtual one (apt's "Note, selecting X instead of Y").
fn request_id(u: &Universe<'_>, name: &str, requested_by: &str) -> Result<PkgId, PlanError> {
    let unknown = || PlanError::UnknownPackage {
        name: name.to_string(),
        requested_by: requested_by.to_string(),
    };
    let id = u.id(name).ok_or_else(unknown)?;
    if u.candidate(id).is_some() {
        return Ok(id);
    }
    match u.providers(id) {
        [] => Err(unknown()),
        [only] => Ok(only.provider),
        many => {
            let mut names: Vec<&str> = many.iter().map(|p| u.name(p.provider)).collect();
            names.sort_unstable();
            names.dedup();
            Err(PlanError::UnknownPackage {
                name: name.to_string(),
                requested_by: format!(
                    "{requested_by}; it is a virtual package provided by {}: include one of them",
                    names.join(", ")
                ),
            })
        }
    }
}

/// Refuse a selection with an unmet dependency or a conflict, naming how it came in.
fn check(m: &Marker<'_, '_>, selected: &[PkgId]) -> Result<(), PlanError> {
    let u = m.u;
    for &id in selected {
        for (_, group) in &u.relations(id)?.depends {
            if !m.group_satisfied(group)? {
                let mut explain = Explain {
                    m,
                    installable: HashMap::new(),
                };
                let (path, dependency) = explain.why(group)?;
                let mut chain = chain_of(m, id);
                chain.extend(path);
                chain.push(dependency.clone());
                return Err(PlanError::Unsatisfiable {
                    dependency,
                    chain: chain.join(" → "),
                });
            }
        }
    }
    for &id in selected {
        if let Some((package, relation, target)) = m.conflict_with_selected(id)? {
            return Err(PlanError::Conflict {
                package: u.name(package).to_string(),
                relation: relation.to_string(),
                target: u.name(target).to_string(),
                chain: format!(
                    "{}; {}",
                    chain_of(m, package).join(" → "),
                    chain_of(m, target).join(" → ")
                ),
            });
        }
    }
    Ok(())
}

/// `include openssh-server → openssh-client`: how `id` came to be selected.
fn chain_of(m: &Marker<'_, '_>, id: PkgId) -> Vec<String> {
    let mut names = vec![m.u.name(id).to_string()];
    let mut seen = HashSet::from([id]);
    let mut cur = id;
    loop {
        match &m.reason[cur as usize] {
            Some(Reason::Dependency(parent)) if seen.insert(*parent) => {
                names.push(m.u.name(*parent).to_string());
                cur = *parent;
            }
            Some(Reason::Root(label)) => {
                if label.ends_with(&format!(" {}", m.u.name(cur))) {
                    names.pop();
                }
                names.push(label.clone());
                break;
            }
            _ => break,
        }
    }
    names.reverse();
    names
}

/// Finds the deepest dependency that makes a group unsatisfiable.
struct Explain<'m, 'u, 'a> {
    m: &'m Marker<'u, 'a>,
    /// Memo of "could this candidate be installed next to the selection" (true while visited).
    installable: HashMap<PkgId, bool>,
}

impl Explain<'_, '_, '_> {
    fn installable(&mut self, id: PkgId) -> Result<bool, PlanError> {
        if self.m.selected(id) {
            return Ok(true);
        }
        if let Some(&known) = self.installable.get(&id) {
            return Ok(known);
        }
        self.installable.insert(id, true);
        let mut ok =
            self.m.u.candidate(id).is_some() && self.m.conflict_with_selected(id)?.is_none();
        if ok {
            for (_, group) in &self.m.u.relations(id)?.depends {
                if self.failing(group)? {
                    ok = false;
                    break;
                }
            }
        }
        self.installable.insert(id, ok);
        Ok(ok)
    }

    fn failing(&mut self, group: &Group) -> Result<bool, PlanError> {
        for rel in group {
            for s in self.m.u.satisfiers(rel)? {
                if self.installable(s)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The packages to walk through and the deepest failing group, as text.
    fn why(&mut self, group: &Group) -> Result<(Vec<String>, String), PlanError> {
        let mut path = Vec::new();
        let mut group = group.clone();
        let mut seen = HashSet::new();
        loop {
            let mut next = None;
            'find: for rel in &group {
                for s in self.m.u.satisfiers(rel)? {
                    if !seen.insert(s) || self.installable(s)? {
                        continue;
                    }
                    for (_, g) in &self.m.u.relations(s)?.depends {
                        if self.failing(g)? {
                            next = Some((s, g.clone()));
                            break 'find;
                        }
                    }
                }
            }
            match next {
                Some((s, g)) if path.len() < 32 => {
                    path.push(self.m.u.name(s).to_string());
                    group = g;
                }
                _ => return Ok((path, group_text(&group))),
            }
        }
    }
}
