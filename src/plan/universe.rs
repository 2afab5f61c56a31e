//! The resolver's view of the archive: one candidate version per package name (apt pins every
//! suite at 500, so the highest version wins), the `Provides` of those candidates, and apt's
//! package-cache order, which apt uses to break ties.
//!
//! Built once per resolution from the stanzas of every suite; relationship fields and versions
//! are parsed lazily, only for the packages the resolver looks at.

use std::cell::OnceCell;
use std::collections::HashMap;

use rustc_hash::FxHashMap;

use debversion::Version;

use super::PlanError;
use super::relation::{
    ArchQualifier, Group, Relation, mentioned_names, parse_provide, parse_relations, parse_version,
};
use crate::archive::BinaryPackage;

/// A package name's index in apt's cache order (order of first mention in the indexes).
pub(crate) type PkgId = u32;

/// One `Provides` entry of a candidate.
pub(crate) struct Provide<'a> {
    /// The providing package.
    pub provider: PkgId,
    /// `Provides: name (= version)`, as written (parsed only when a versioned relation asks:
    /// Rust library packages provide hundreds of versioned names each);
    /// `None` for an unversioned provide.
    pub version: Option<&'a str>,
}

/// The relationship fields of a candidate, parsed.
#[derive(Default)]
pub(crate) struct Relations {
    /// `Pre-Depends` then `Depends`, in field order (apt's order), with `true` for Pre-Depends.
    pub depends: Vec<(bool, Group)>,
    /// `Conflicts` and `Breaks` alternatives (no OR groups), with the field name.
    pub negative: Vec<(&'static str, Relation)>,
}

/// See the module documentation.
pub(crate) struct Universe<'a> {
    /// Every stanza of every suite, as given.
    pub stanzas: &'a [BinaryPackage],
    /// The target architecture.
    pub native: String,
    names: Vec<&'a str>,
    // Keys come from the verified archive, so the fast non-DoS-resistant hash is fine.
    ids: FxHashMap<&'a str, PkgId>,
    candidate: Vec<Option<usize>>,
    provides: Vec<Vec<Provide<'a>>>,
    /// For each name: the candidates whose Conflicts/Breaks mention it.
    negated_by: Vec<Vec<PkgId>>,
    versions: Vec<OnceCell<Result<Version, String>>>,
    relations: Vec<OnceCell<Result<Relations, (&'static str, String)>>>,
}

impl<'a> Universe<'a> {
    /// Index `stanzas` for architecture `native`; `pins` force a version (`name=version`).
    pub(crate) fn build(
        stanzas: &'a [BinaryPackage],
        native: &str,
        pins: &HashMap<String, String>,
    ) -> Result<Self, PlanError> {
        let usable = |p: &BinaryPackage| p.architecture == native || p.architecture == "all";

        // apt numbers packages as it first meets their names while reading the indexes in
        // sources.list order: the stanza's own name, then the names in its relationship
        // fields (apt's parse order), then its Provides. The number breaks ties between equal
        // providers and orders the packages a pattern (`?essential`) selects; checked against
        // the order apt 2.6 marks noble's essential set in (`Debug::pkgDepCache::Marker`).
        let mut names: Vec<&'a str> = Vec::new();
        let mut ids: FxHashMap<&'a str, PkgId> = FxHashMap::default();
        ids.reserve(stanzas.len() + stanzas.len() / 2);
        let mut mention = |name: &'a str, names: &mut Vec<&'a str>| -> PkgId {
            *ids.entry(name).or_insert_with(|| {
                names.push(name);
                (names.len() - 1) as PkgId
            })
        };
        let mut own_id = Vec::with_capacity(stanzas.len());
        for p in stanzas {
            if !usable(p) {
                own_id.push(None);
                continue;
            }
            own_id.push(Some(mention(&p.name, &mut names)));
            let [recommends, suggests, replaces, enhances] = &p.weak_relations;
            let fields = [
                &p.pre_depends,
                &p.depends,
                &p.conflicts,
                &p.breaks,
                recommends,
                suggests,
                replaces,
                enhances,
                &p.provides,
            ];
            for field in fields.into_iter().flatten() {
                for n in mentioned_names(field) {
                    mention(n, &mut names);
                }
            }
        }

        // The candidate: the highest version of each name (the first stanza on a tie, i.e.
        // the earlier suite), unless the recipe pins one.
        let mut candidate: Vec<Option<usize>> = vec![None; names.len()];
        let mut parsed: HashMap<usize, Version> = HashMap::new();
        let mut version_of = |i: usize| -> Result<Version, PlanError> {
            if let Some(v) = parsed.get(&i) {
                return Ok(v.clone());
            }
            let v = parse_version(&stanzas[i].version).map_err(|message| PlanError::BadField {
                package: stanzas[i].name.clone(),
                field: "Version".into(),
                message,
            })?;
            parsed.insert(i, v.clone());
            Ok(v)
        };
        for (i, p) in stanzas.iter().enumerate() {
            let Some(id) = own_id[i] else { continue };
            if let Some(pin) = pins.get(&p.name) {
                if *pin == p.version && candidate[id as usize].is_none() {
                    candidate[id as usize] = Some(i);
                }
                continue;
            }
            match candidate[id as usize] {
                None => candidate[id as usize] = Some(i),
                Some(best) => {
                    if stanzas[best].version != p.version && version_of(i)? > version_of(best)? {
                        candidate[id as usize] = Some(i);
                    }
                }
            }
        }

        // Provides of the candidates only: apt never considers another version's Provides.
        let mut provides: Vec<Vec<Provide<'a>>> = (0..names.len()).map(|_| Vec::new()).collect();
        for (id, cand) in candidate.iter().enumerate() {
            let Some(i) = *cand else { continue };
            let Some(field) = &stanzas[i].provides else {
                continue;
            };
            for entry in field.split(',') {
                let (name, version) =
                    parse_provide(entry).map_err(|message| PlanError::BadField {
                        package: stanzas[i].name.clone(),
                        field: "Provides".into(),
                        message,
                    })?;
                let Some(&target) = ids.get(name) else {
                    continue;
                };
                provides[target as usize].push(Provide {
                    provider: id as PkgId,
                    version,
                });
            }
        }

        let mut negated_by: Vec<Vec<PkgId>> = (0..names.len()).map(|_| Vec::new()).collect();
        for (id, cand) in candidate.iter().enumerate() {
            let Some(i) = *cand else { continue };
            let p = &stanzas[i];
            for field in [&p.conflicts, &p.breaks].into_iter().flatten() {
                for name in mentioned_names(field) {
                    if let Some(&target) = ids.get(name) {
                        let list = &mut negated_by[target as usize];
                        if list.last() != Some(&(id as PkgId)) {
                            list.push(id as PkgId);
                        }
                    }
                }
            }
        }

        let n = names.len();
        Ok(Universe {
            stanzas,
            native: native.to_string(),
            names,
            ids,
            candidate,
            provides,
            negated_by,
            versions: (0..n).map(|_| OnceCell::new()).collect(),
            relations: (0..n).map(|_| OnceCell::new()).collect(),
        })
    }

    /// How many names (ids) there are.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The id of a name, if any index mentions it.
    pub(crate) fn id(&self, name: &str) -> Option<PkgId> {
        self.ids.get(name).copied()
    }

    /// The name of an id.
    pub(crate) fn name(&self, id: PkgId) -> &'a str {
        self.names[id as usize]
    }

    /// The candidate stanza of a package, if it has one (virtual packages have none).
    pub(crate) fn candidate(&self, id: PkgId) -> Option<&'a BinaryPackage> {
        self.candidate[id as usize].map(|i| &self.stanzas[i])
    }

    /// The packages whose candidates provide `id`.
    pub(crate) fn providers(&self, id: PkgId) -> &[Provide<'a>] {
        &self.provides[id as usize]
    }

    /// The candidates whose Conflicts/Breaks name `id`.
    pub(crate) fn negated_by(&self, id: PkgId) -> &[PkgId] {
        &self.negated_by[id as usize]
    }

    /// The parsed candidate version.
    pub(crate) fn version(&self, id: PkgId) -> Result<&Version, PlanError> {
        let cell = self.versions[id as usize].get_or_init(|| match self.candidate(id) {
            Some(p) => parse_version(&p.version),
            None => Err("no candidate".to_string()),
        });
        cell.as_ref().map_err(|message| PlanError::BadField {
            package: self.name(id).to_string(),
            field: "Version".into(),
            message: message.clone(),
        })
    }

    /// The parsed relationship fields of the candidate.
    pub(crate) fn relations(&self, id: PkgId) -> Result<&Relations, PlanError> {
        let cell = self.relations[id as usize].get_or_init(|| self.parse_relations_of(id));
        cell.as_ref()
            .map_err(|(field, message)| PlanError::BadField {
                package: self.name(id).to_string(),
                field: (*field).to_string(),
                message: message.clone(),
            })
    }

    fn parse_relations_of(&self, id: PkgId) -> Result<Relations, (&'static str, String)> {
        let mut out = Relations::default();
        let Some(p) = self.candidate(id) else {
            return Ok(out);
        };
        let parse = |field: &'static str, text: &Option<String>| match text {
            None => Ok(Vec::new()),
            Some(t) => parse_relations(t).map_err(|message| (field, message)),
        };
        for g in parse("Pre-Depends", &p.pre_depends)? {
            out.depends.push((true, g));
        }
        for g in parse("Depends", &p.depends)? {
            out.depends.push((false, g));
        }
        for (field, text) in [("Conflicts", &p.conflicts), ("Breaks", &p.breaks)] {
            for rel in parse(field, text)?.into_iter().flatten() {
                out.negative.push((field, rel));
            }
        }
        Ok(out)
    }

    /// Does the candidate of `id` (a real package named by `rel`) satisfy `rel`?
    pub(crate) fn real_satisfies(&self, rel: &Relation, id: PkgId) -> Result<bool, PlanError> {
        let Some(p) = self.candidate(id) else {
            return Ok(false);
        };
        let arch_ok = match &rel.arch {
            ArchQualifier::None | ArchQualifier::Native => true,
            ArchQualifier::Any => p.multi_arch.as_deref() == Some("allowed"),
            ArchQualifier::Arch(a) => *a == self.native,
        };
        if !arch_ok {
            return Ok(false);
        }
        match &rel.constraint {
            None => Ok(true),
            Some((op, wanted)) => Ok(op.holds(self.version(id)?, wanted)),
        }
    }

    /// Does the provide `prv` (of `rel.name`) satisfy `rel`? An unversioned provide never
    /// satisfies a versioned relation.
    pub(crate) fn provide_satisfies(
        &self,
        rel: &Relation,
        prv: &Provide<'_>,
    ) -> Result<bool, PlanError> {
        let arch_ok = match &rel.arch {
            ArchQualifier::None | ArchQualifier::Native => true,
            ArchQualifier::Any => self
                .candidate(prv.provider)
                .is_some_and(|p| p.multi_arch.as_deref() == Some("allowed")),
            ArchQualifier::Arch(a) => *a == self.native,
        };
        if !arch_ok {
            return Ok(false);
        }
        match (&rel.constraint, prv.version) {
            (None, _) => Ok(true),
            (Some(_), None) => Ok(false),
            (Some((op, wanted)), Some(text)) => {
                let have = parse_version(text).map_err(|message| PlanError::BadField {
                    package: self.name(prv.provider).to_string(),
                    field: "Provides".into(),
                    message,
                })?;
                Ok(op.holds(&have, wanted))
            }
        }
    }

    /// Every candidate that satisfies `rel`: the named package itself, then its providers.
    pub(crate) fn satisfiers(&self, rel: &Relation) -> Result<Vec<PkgId>, PlanError> {
        let Some(target) = self.id(&rel.name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if self.real_satisfies(rel, target)? {
            out.push(target);
        }
        for prv in self.providers(target) {
            if self.provide_satisfies(rel, prv)? && !out.contains(&prv.provider) {
                out.push(prv.provider);
            }
        }
        Ok(out)
    }

    /// `Protected: yes` / `Important: yes` (apt's `Flag::Important`).
    pub(crate) fn is_protected(&self, id: PkgId) -> bool {
        self.candidate(id).is_some_and(|p| p.protected)
    }

    /// apt's `Priority` rank (lower is preferred; a missing field ranks 0, as in apt's cache).
    pub(crate) fn priority_rank(&self, id: PkgId) -> u8 {
        match self.candidate(id).and_then(|p| p.priority.as_deref()) {
            None => 0,
            Some("required") => 1,
            Some("important") => 2,
            Some("standard") => 3,
            Some("optional") => 4,
            Some(_) => 5,
        }
    }
}
