//! A greedy marker that makes the choices apt's `pkgDepCache::MarkInstall` makes (apt 2.x,
//! `APT::Solver "internal"`, `Install-Recommends false`), so that the plan equals what
//! `mmdebstrap` installs through apt.
//!
//! Why greedy and not SAT: apt is not a SAT solver. It walks dependencies depth first in field
//! order and keeps the first alternative it can mark; a SAT solver finds *a* valid set, often a
//! different one (another provider, another branch of an OR group). To produce apt's set we
//! replay apt's walk:
//!
//! * requested packages are marked first (without dependencies) and protected, then their
//!   dependencies are resolved one requested package at a time, in request order;
//! * a group already satisfied by a marked or installed package is skipped (so an alternative
//!   that is already selected wins); protection propagates to dependencies with a single
//!   possible solution;
//! * otherwise the candidates of every alternative, in alternative order, each alternative's
//!   candidates sorted as apt's `CompareProviders` sorts them (protected, installed, the real
//!   package before providers, Essential, `Protected: yes`, Priority, then the later package in
//!   cache order), are tried in turn; a
//!   candidate whose dependencies no candidate can satisfy, or that conflicts with the marked
//!   set, is refused and the next one tried.
//!
//! It never reads or writes anything outside the [`Universe`].

use super::PlanError;
use super::relation::{Group, Relation};
use super::universe::{PkgId, Universe};

/// apt's recursion limit in `IsModeChangeOk`.
const MAX_DEPTH: u32 = 3000;

/// Why a package was marked: the first request or dependency that brought it in.
#[derive(Debug, Clone)]
pub(crate) enum Reason {
    /// Requested directly (`include openssh-server`, `essential`, …).
    Root(String),
    /// A dependency of another marked package.
    Dependency(PkgId),
}

/// The marking state over all package ids.
pub(crate) struct Marker<'u, 'a> {
    pub u: &'u Universe<'a>,
    /// Installed by an earlier apt run (mmdebstrap's essential step).
    pub current: Vec<bool>,
    /// Marked for installation in this run.
    pub install: Vec<bool>,
    protected: Vec<bool>,
    /// Why each package was first marked.
    pub reason: Vec<Option<Reason>>,
}

impl<'u, 'a> Marker<'u, 'a> {
    pub(crate) fn new(u: &'u Universe<'a>, ids: usize) -> Self {
        Marker {
            u,
            current: vec![false; ids],
            install: vec![false; ids],
            protected: vec![false; ids],
            reason: vec![None; ids],
        }
    }

    /// Installed now or marked: apt's "install version" exists.
    pub(crate) fn selected(&self, id: PkgId) -> bool {
        self.current[id as usize] || self.install[id as usize]
    }

    /// Finish one apt run: what it marked is installed for the next one.
    pub(crate) fn commit(&mut self) {
        for i in 0..self.install.len() {
            if self.install[i] {
                self.current[i] = true;
                self.install[i] = false;
            }
            self.protected[i] = false;
        }
    }

    /// One `apt-get install REQUESTED…` run.
    pub(crate) fn run(&mut self, requested: &[(PkgId, String)]) -> Result<(), PlanError> {
        // TryToInstall: mark every request without its dependencies and protect it.
        for (id, why) in requested {
            let i = *id as usize;
            if !self.current[i] {
                self.install[i] = true;
            }
            self.protected[i] = true;
            if self.reason[i].is_none() {
                self.reason[i] = Some(Reason::Root(why.clone()));
            }
        }
        // doAutoInstall: in request order (apt 2.6 keeps the command line's order; a pattern
        // yields its matches in cache order, which the caller passes sorted).
        let mut seen = std::collections::HashSet::new();
        let order: Vec<PkgId> = requested
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| seen.insert(*id))
            .collect();
        for id in order {
            self.mark_install(id, true, None, 0)?;
        }
        Ok(())
    }

    /// Is `rel` satisfied by a selected package (apt's `DepInstall`)?
    fn rel_satisfied(&self, rel: &Relation) -> Result<bool, PlanError> {
        let Some(target) = self.u.id(&rel.name) else {
            return Ok(false);
        };
        if self.selected(target) && self.u.real_satisfies(rel, target)? {
            return Ok(true);
        }
        for p in self.u.providers(target) {
            if self.selected(p.provider) && self.u.provide_satisfies(rel, p)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn group_satisfied(&self, group: &Group) -> Result<bool, PlanError> {
        for rel in group {
            if self.rel_satisfied(rel)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Selected packages that satisfy `rel` (the named package, then providers).
    pub(crate) fn selected_satisfiers(&self, rel: &Relation) -> Result<Vec<PkgId>, PlanError> {
        Ok(self
            .u
            .satisfiers(rel)?
            .into_iter()
            .filter(|&id| self.selected(id))
            .collect())
    }

    /// apt's `IsInstallOkDependenciesSatisfiableByCandidates`: every Depends/Pre-Depends group
    /// has an alternative that is selected or has a satisfying candidate.
    fn satisfiable_by_candidates(&self, id: PkgId) -> Result<bool, PlanError> {
        for (_, group) in &self.u.relations(id)?.depends {
            let mut ok = false;
            for rel in group {
                if self.rel_satisfied(rel)? || !self.u.satisfiers(rel)?.is_empty() {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Does `id` conflict with (or break) a selected package, or a selected package with it?
    pub(crate) fn conflict_with_selected(
        &self,
        id: PkgId,
    ) -> Result<Option<(PkgId, &'static str, PkgId)>, PlanError> {
        for (field, rel) in &self.u.relations(id)?.negative {
            for other in self.u.satisfiers(rel)? {
                if other != id && self.selected(other) {
                    return Ok(Some((id, field, other)));
                }
            }
        }
        // Reverse direction: a selected package whose Conflicts/Breaks name `id` or a name
        // that `id` provides.
        let u = self.u;
        let mut names: Vec<PkgId> = vec![id];
        if let Some(p) = u.candidate(id)
            && let Some(prov) = &p.provides
        {
            names.extend(super::relation::mentioned_names(prov).filter_map(|n| u.id(n)));
        }
        for name in names {
            for &other in u.negated_by(name) {
                if other == id || !self.selected(other) {
                    continue;
                }
                for (field, rel) in &u.relations(other)?.negative {
                    if u.id(&rel.name) == Some(name) && u.satisfiers(rel)?.contains(&id) {
                        return Ok(Some((other, field, id)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// apt's `CompareProviders` as a sort key (smaller sorts first).
    fn provider_key(
        &self,
        id: PkgId,
        target: &str,
    ) -> (bool, bool, bool, bool, bool, u8, std::cmp::Reverse<PkgId>) {
        let i = id as usize;
        (
            !self.protected[i],
            !self.current[i],
            self.u.name(id) != target,
            !self.u.candidate(id).is_some_and(|p| p.essential),
            !self.u.is_protected(id),
            self.u.priority_rank(id),
            std::cmp::Reverse(id),
        )
    }

    /// apt's `getAllPossibleSolutions(…, CANDIDATE, sorted)`.
    fn possible_solutions(&self, group: &Group) -> Result<Vec<PkgId>, PlanError> {
        let mut installed = Vec::new();
        let mut new = Vec::new();
        for rel in group {
            let mut cands = self.u.satisfiers(rel)?;
            cands.sort_by_key(|&c| self.provider_key(c, &rel.name));
            for c in cands {
                if self.current[c as usize] {
                    installed.push(c);
                } else {
                    new.push(c);
                }
            }
        }
        installed.extend(new);
        installed.dedup();
        Ok(installed)
    }

    /// Mark without dependencies (apt's `MarkInstall(…, AutoInst=false)`).
    fn mark_only(&mut self, id: PkgId, parent: Option<PkgId>) -> bool {
        if self.u.candidate(id).is_none() {
            return false;
        }
        let i = id as usize;
        if !self.current[i] {
            self.install[i] = true;
        }
        if self.reason[i].is_none() {
            self.reason[i] = parent.map(Reason::Dependency);
        }
        true
    }

    /// apt's `MarkInstall(Pkg, AutoInst=true, …, FromUser)`.
    fn mark_install(
        &mut self,
        id: PkgId,
        from_user: bool,
        parent: Option<PkgId>,
        depth: u32,
    ) -> Result<bool, PlanError> {
        // apt gives up below this depth too ("we are not trying too hard").
        if depth > MAX_DEPTH {
            return Ok(false);
        }
        let i = id as usize;
        if !self.protected[i] && self.selected(id) {
            return Ok(true);
        }
        if self.u.candidate(id).is_none() {
            return Ok(false);
        }
        if !self.current[i] && !self.satisfiable_by_candidates(id)? {
            return Ok(false);
        }
        let propagate = self.protected[i];
        if !self.current[i]
            && !from_user
            && !propagate
            && self.conflict_with_selected(id)?.is_some()
        {
            return Ok(false);
        }
        let mut to_install: Vec<&'u Group> = Vec::new();
        let u: &'u Universe<'a> = self.u;
        let relations = u.relations(id)?;
        for (_, group) in &relations.depends {
            if propagate || !self.group_satisfied(group)? {
                to_install.push(group);
            }
        }
        let was_selected = self.selected(id);
        self.mark_only(id, parent);
        self.protected[i] = true; // apt's ScopedProtected while the dependencies are marked

        let mut failed = false;
        for group in to_install {
            if self.group_satisfied(group)? {
                if !propagate {
                    continue;
                }
                let mut sols = Vec::new();
                for rel in group {
                    sols.extend(self.u.satisfiers(rel)?);
                }
                sols.sort_unstable();
                sols.dedup();
                if sols.len() != 1 || self.protected[sols[0] as usize] {
                    continue;
                }
                self.protected[sols[0] as usize] = true;
                if !self.mark_install(sols[0], false, Some(id), depth + 1)? {
                    failed = true;
                }
                continue;
            }
            let sols = self.possible_solutions(group)?;
            let mut found = false;
            for &sol in &sols {
                if propagate && sols.len() == 1 {
                    if !self.mark_only(sol, Some(id)) {
                        continue;
                    }
                    self.protected[sol as usize] = true;
                }
                if !self.mark_install(sol, false, Some(id), depth + 1)? {
                    continue;
                }
                found = true;
                break;
            }
            if !found {
                failed = true;
                if !propagate && !from_user {
                    break;
                }
            }
        }
        self.protected[i] = propagate;
        if failed && !propagate && !from_user {
            // MarkInstall_DiscardInstall: only this package is unmarked, not what it pulled in.
            if !was_selected {
                self.install[i] = false;
                self.reason[i] = None;
            }
            return Ok(false);
        }
        Ok(!failed)
    }
}
