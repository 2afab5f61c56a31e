//! The resolver chooses what apt (through mmdebstrap) would install: hermetic tests on
//! synthetic `Packages` stanzas, one per rule, plus an `#[ignore]`d run on a real archive.

use std::fmt::Write as _;

use ingot::archive::BinaryPackage;
use ingot::archive::packages::parse_packages;
use ingot::plan::{Plan, PlanError, Selection, resolve};
use ingot::recipe::Variant;

/// A suite's index built from short stanzas: `name version [Field: value]…`, one per entry.
fn index(suite: &str, stanzas: &[&str]) -> Vec<BinaryPackage> {
    let mut text = String::new();
    for s in stanzas {
        let mut lines = s.split('\n');
        let head = lines.next().unwrap_or_default();
        let mut words = head.split_whitespace();
        let name = words.next().unwrap_or_default();
        let version = words.next().unwrap_or("1.0");
        let mut fields: Vec<String> = lines
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if !fields.iter().any(|f| f.starts_with("Architecture:")) {
            fields.push("Architecture: amd64".into());
        }
        if !fields.iter().any(|f| f.starts_with("Priority:")) {
            fields.push("Priority: optional".into());
        }
        writeln!(text, "Package: {name}\nVersion: {version}").unwrap();
        for f in fields {
            writeln!(text, "{f}").unwrap();
        }
        writeln!(
            text,
            "Filename: pool/main/{name}_{version}_amd64.deb\nSize: 100\nSHA256: {}\nDescription: test package\n synthetic\n",
            "ab".repeat(32)
        )
        .unwrap();
    }
    parse_packages(&text, suite, "http://mirror.test/ubuntu").expect("synthetic index parses")
}

fn select(variant: Variant, include: &[&str]) -> Selection {
    Selection {
        variant,
        include: include.iter().map(|s| s.to_string()).collect(),
        architecture: "amd64".into(),
    }
}

fn names(plan: &Plan) -> Vec<String> {
    plan.packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

fn resolve_names(universe: &[BinaryPackage], include: &[&str]) -> Vec<String> {
    names(&resolve(universe, &select(Variant::Essential, include)).expect("resolves"))
}

/// A tiny base every test shares: one essential package.
fn base() -> Vec<&'static str> {
    vec!["base-files 1\nEssential: yes\nPriority: required"]
}

fn with_base(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = base();
    v.extend_from_slice(extra);
    v
}

#[test]
fn essential_and_required_and_apt_for_minbase() {
    let u = index(
        "noble",
        &[
            "base-files 1\nEssential: yes\nPriority: required\nDepends: libc6",
            "libc6 2\nPriority: required",
            "mawk 1\nPriority: required",
            "apt 3\nPriority: important\nDepends: libapt",
            "libapt 3\nPriority: important",
            "vim 9\nPriority: optional",
        ],
    );
    let plan = resolve(&u, &select(Variant::Minbase, &[])).unwrap();
    assert_eq!(
        names(&plan),
        ["apt=3", "base-files=1", "libapt=3", "libc6=2", "mawk=1"]
    );
    let essential = resolve(&u, &select(Variant::Essential, &[])).unwrap();
    assert_eq!(names(&essential), ["base-files=1", "libc6=2"]);
    let bf = &plan.packages[1];
    assert!(bf.essential);
    assert_eq!(bf.depends_on, ["libc6"]);
    assert_eq!(bf.source, "base-files");
    assert_eq!(
        bf.url(),
        "http://mirror.test/ubuntu/pool/main/base-files_1_amd64.deb"
    );
}

#[test]
fn highest_version_across_suites_wins() {
    let mut u = index("noble", &with_base(&["foo 1.0-1", "bar 2.0"]));
    u.extend(index("noble-updates", &["foo 1.0-1ubuntu0.1", "bar 1.9"]));
    u.extend(index("noble-security", &["foo 1.0-1ubuntu0.1"]));
    let plan = resolve(&u, &select(Variant::Essential, &["foo", "bar"])).unwrap();
    assert_eq!(
        names(&plan),
        ["bar=2.0", "base-files=1", "foo=1.0-1ubuntu0.1"]
    );
    let foo = plan.packages.iter().find(|p| p.name == "foo").unwrap();
    assert_eq!(
        foo.suite, "noble-updates",
        "the first suite listing the winning version"
    );
}

#[test]
fn equal_versions_are_not_distinct() {
    // 1.0 == 1.00 for dpkg: the first listed stays the candidate.
    let mut u = index("noble", &with_base(&["foo 1.00"]));
    u.extend(index("noble-updates", &["foo 1.0"]));
    assert_eq!(resolve_names(&u, &["foo"]), ["base-files=1", "foo=1.00"]);
}

#[test]
fn version_operators() {
    let cases: [(&str, &[&str]); 5] = [
        ("lib (<< 2)", &["lib=1.5"]),
        ("lib (<= 2)", &["lib=2"]),
        ("lib (= 2)", &["lib=2"]),
        ("lib (>= 2)", &["lib=2"]),
        ("lib (>> 2)", &["lib=3"]),
    ];
    for (dep, want) in cases {
        // Three providers of distinct versions through versioned Provides, one real `lib`.
        let depends = format!("app 1\nDepends: {dep}");
        let depends: &'static str = Box::leak(depends.into_boxed_str());
        let u = index(
            "noble",
            &with_base(&[
                depends,
                "lib 2",
                "lib-old 1\nProvides: lib (= 1.5)",
                "lib-new 1\nProvides: lib (= 3)",
            ]),
        );
        let got = resolve_names(&u, &["app"]);
        let libs: Vec<String> = got
            .iter()
            .filter(|n| n.starts_with("lib"))
            .map(|n| match n.as_str() {
                "lib-old=1" => "lib=1.5".to_string(),
                "lib-new=1" => "lib=3".to_string(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(libs, want, "Depends: {dep}");
    }
}

#[test]
fn unsatisfiable_version_names_the_chain() {
    let u = index(
        "noble",
        &with_base(&[
            "openssh-server 1\nDepends: openssh-client (= 1)",
            "openssh-client 1\nDepends: libfoo (>= 3)",
            "libfoo 2",
        ]),
    );
    let err = resolve(&u, &select(Variant::Essential, &["openssh-server"])).unwrap_err();
    match &err {
        PlanError::Unsatisfiable { dependency, chain } => {
            assert_eq!(dependency, "libfoo (>= 3)");
            assert_eq!(
                chain,
                "include openssh-server → openssh-client → libfoo (>= 3)"
            );
        }
        other => panic!("expected Unsatisfiable, got {other}"),
    }
    assert!(err.to_string().contains("openssh-client"));
}

#[test]
fn first_installable_alternative_wins() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: broken-a | good-b | good-c",
            "broken-a 1\nDepends: missing",
            "good-b 1",
            "good-c 1",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "good-b=1"]
    );
}

#[test]
fn already_selected_alternative_is_preferred() {
    let u = index(
        "noble",
        &with_base(&["app 1\nDepends: first | second", "first 1", "second 1"]),
    );
    // `second` is requested too, so apt keeps it and does not add `first`.
    assert_eq!(
        resolve_names(&u, &["app", "second"]),
        ["app=1", "base-files=1", "second=1"]
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "first=1"]
    );
}

#[test]
fn virtual_package_provider_choice() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: awk",
            "gawk 1\nPriority: optional\nProvides: awk",
            "mawk 1\nPriority: required\nProvides: awk",
            "original-awk 1\nPriority: optional\nProvides: awk",
        ]),
    );
    // Priority decides (required before optional).
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "mawk=1"]
    );
    // A provider that is already selected wins.
    assert_eq!(
        resolve_names(&u, &["app", "gawk"]),
        ["app=1", "base-files=1", "gawk=1"]
    );
}

#[test]
fn real_package_before_providers() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: mail",
            "mail 1\nPriority: optional",
            "postfix 1\nPriority: required\nProvides: mail",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "mail=1"]
    );
}

#[test]
fn versioned_provides() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: virt (>= 2)",
            "unversioned 1\nPriority: required\nProvides: virt",
            "too-old 1\nPriority: required\nProvides: virt (= 1)",
            "right 1\nProvides: virt (= 2.5)",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "right=1"]
    );
}

#[test]
fn any_and_native_qualifiers() {
    let u = index(
        "noble",
        &with_base(&[
            "tool 1\nDepends: python3:any, libz:native",
            "python3 3.12\nMulti-Arch: allowed",
            "libz 1\nMulti-Arch: same",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["tool"]),
        ["base-files=1", "libz=1", "python3=3.12", "tool=1"]
    );
    // `:any` needs Multi-Arch: allowed.
    let u = index(
        "noble",
        &with_base(&["tool 1\nDepends: perl:any", "perl 5\nMulti-Arch: foreign"]),
    );
    let err = resolve(&u, &select(Variant::Essential, &["tool"])).unwrap_err();
    assert!(matches!(err, PlanError::Unsatisfiable { .. }), "{err}");
}

#[test]
fn architecture_all_and_foreign_stanzas() {
    let mut u = index(
        "noble",
        &with_base(&["data 1\nArchitecture: all", "tool 1\nDepends: data"]),
    );
    // An i386 stanza must never be chosen for amd64.
    u.extend(index("noble", &["data 9\nArchitecture: i386"]));
    assert_eq!(
        resolve_names(&u, &["tool"]),
        ["base-files=1", "data=1", "tool=1"]
    );
}

#[test]
fn conflicts_between_requested_packages_is_an_error() {
    let u = index(
        "noble",
        &with_base(&["left 1\nConflicts: right", "right 1"]),
    );
    let err = resolve(&u, &select(Variant::Essential, &["left", "right"])).unwrap_err();
    match err {
        PlanError::Conflict {
            package,
            relation,
            target,
            chain,
        } => {
            assert_eq!(
                (package.as_str(), relation.as_str(), target.as_str()),
                ("left", "Conflicts", "right")
            );
            assert!(
                chain.contains("include left") && chain.contains("include right"),
                "{chain}"
            );
        }
        other => panic!("expected Conflict, got {other}"),
    }
    // Breaks with a version: only the broken range conflicts.
    let u = index(
        "noble",
        &with_base(&["left 1\nBreaks: right (<< 2)", "right 2"]),
    );
    assert_eq!(
        resolve_names(&u, &["left", "right"]),
        ["base-files=1", "left=1", "right=2"]
    );
}

#[test]
fn conflicting_alternative_is_skipped() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: bad | good",
            "bad 1\nConflicts: base-files",
            "good 1",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "good=1"]
    );
}

#[test]
fn unknown_include_and_pins() {
    let u = index("noble", &with_base(&["foo 1"]));
    let err = resolve(&u, &select(Variant::Essential, &["nope"])).unwrap_err();
    assert!(
        matches!(&err, PlanError::UnknownPackage { name, requested_by } if name == "nope" && requested_by.contains("include")),
        "{err}"
    );
    let err = resolve(&u, &select(Variant::Minbase, &[])).unwrap_err();
    assert!(
        matches!(&err, PlanError::UnknownPackage { name, .. } if name == "apt"),
        "{err}"
    );
    let mut u = index("noble", &with_base(&["foo 2"]));
    u.extend(index("noble-updates", &["foo 3"]));
    assert_eq!(resolve_names(&u, &["foo=2"]), ["base-files=1", "foo=2"]);
    assert!(matches!(
        resolve(&u, &select(Variant::Essential, &["foo=9"])),
        Err(PlanError::UnknownPackage { .. })
    ));
}

#[test]
fn pre_depends_and_depends_edges() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nPre-Depends: libc\nDepends: awk, libc",
            "libc 1",
            "mawk 1\nProvides: awk",
        ]),
    );
    let plan = resolve(&u, &select(Variant::Essential, &["app"])).unwrap();
    let app = plan.packages.iter().find(|p| p.name == "app").unwrap();
    assert_eq!(app.pre_depends_on, ["libc"]);
    assert_eq!(app.depends_on, ["libc", "mawk"]);
    assert_eq!(plan.total_size(), 400);
}

#[test]
fn dependency_cycles_terminate() {
    let u = index(
        "noble",
        &with_base(&["a 1\nDepends: b", "b 1\nDepends: c", "c 1\nDepends: a"]),
    );
    assert_eq!(
        resolve_names(&u, &["a"]),
        ["a=1", "b=1", "base-files=1", "c=1"]
    );
}

#[test]
fn bad_relation_field_names_the_package() {
    let u = index("noble", &with_base(&["app 1\nDepends: foo (>= )"]));
    let err = resolve(&u, &select(Variant::Essential, &["app"])).unwrap_err();
    assert!(
        matches!(&err, PlanError::BadField { package, field, .. } if package == "app" && field == "Depends"),
        "{err}"
    );
}

/// Resolve a real archive and print `name=version` lines (to compare with mmdebstrap).
///
/// `INGOT_RESOLVE_INDEXES`: comma-separated `suite=path/to/Packages` in recipe order (several
/// components of a suite are several entries); `INGOT_RESOLVE_INCLUDE`: comma-separated
/// includes; `INGOT_RESOLVE_VARIANT`: `minbase` (default) or `essential`; `INGOT_RESOLVE_OUT`:
/// where to write the list.
#[test]
#[ignore = "needs real Packages files: see the doc comment"]
fn real_archive() {
    let Ok(indexes) = std::env::var("INGOT_RESOLVE_INDEXES") else {
        panic!("set INGOT_RESOLVE_INDEXES");
    };
    let include: Vec<String> = std::env::var("INGOT_RESOLVE_INCLUDE")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let texts: Vec<(String, String)> = indexes
        .split(',')
        .map(|e| {
            let (suite, path) = e.split_once('=').expect("suite=path");
            (
                suite.to_string(),
                std::fs::read_to_string(path).expect("readable index"),
            )
        })
        .collect();
    // This machine is shared: report CPU time of this thread beside wall time.
    let cpu = || -> std::time::Duration {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let ns = text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        std::time::Duration::from_nanos(ns)
    };
    let (c0, t0) = (cpu(), std::time::Instant::now());
    let mut universe = Vec::new();
    for (suite, text) in &texts {
        universe.extend(
            parse_packages(text, suite, "http://archive.ubuntu.com/ubuntu").expect("parses"),
        );
    }
    let (c1, t1) = (cpu(), std::time::Instant::now());
    let plan = resolve(
        &universe,
        &Selection {
            variant: match std::env::var("INGOT_RESOLVE_VARIANT").as_deref() {
                Ok("essential") => Variant::Essential,
                _ => Variant::Minbase,
            },
            include,
            architecture: "amd64".into(),
        },
    )
    .expect("resolves");
    let t2 = std::time::Instant::now();
    // (The resolver runs on its own thread, so only the parse has a CPU figure here.)
    eprintln!(
        "{} stanzas parsed in {:?} (CPU {:?}), {} packages resolved in {:?}",
        universe.len(),
        t1 - t0,
        c1 - c0,
        plan.packages.len(),
        t2 - t1,
    );
    let list: String = names(&plan).iter().map(|n| format!("{n}\n")).collect();
    if let Ok(out) = std::env::var("INGOT_RESOLVE_OUT") {
        std::fs::write(out, list).expect("writable output");
    }
}

// The next two cases were checked against apt 2.6.1 (`apt-get -s install`) on a file:// repo
// with exactly these stanzas.

#[test]
fn equal_providers_later_in_cache_order_wins() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: virt",
            "p-one 1\nProvides: virt",
            "p-two 1\nProvides: virt",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "p-two=1"]
    );
}

#[test]
fn requests_are_resolved_in_command_line_order() {
    let stanzas = with_base(&[
        "q-app 1\nDepends: a-alt | b-alt",
        "z-app 1\nDepends: b-alt",
        "a-alt 1",
        "b-alt 1",
    ]);
    let u = index("noble", &stanzas);
    // z-app first: b-alt is marked, so q-app's `a-alt | b-alt` is already satisfied.
    assert_eq!(
        resolve_names(&u, &["z-app", "q-app"]),
        ["b-alt=1", "base-files=1", "q-app=1", "z-app=1"]
    );
    assert_eq!(
        resolve_names(&u, &["q-app", "z-app"]),
        ["a-alt=1", "b-alt=1", "base-files=1", "q-app=1", "z-app=1"]
    );
}

#[test]
fn protected_provider_is_preferred_over_priority() {
    let u = index(
        "noble",
        &with_base(&[
            "app 1\nDepends: virt",
            "plain 1\nPriority: required\nProvides: virt",
            "guarded 1\nPriority: optional\nProtected: yes\nProvides: virt",
        ]),
    );
    assert_eq!(
        resolve_names(&u, &["app"]),
        ["app=1", "base-files=1", "guarded=1"]
    );
}

#[test]
fn base_set_comes_from_the_first_suite_only() {
    // mmdebstrap narrows `?essential` and `?priority(required)` to its SUITE (the first one);
    // a package that is required only in noble-updates is not part of the base set, but the
    // base set still gets noble-updates' newer versions.
    let mut u = index(
        "noble",
        &[
            "base-files 1\nEssential: yes\nPriority: required",
            "libc6 2\nPriority: required",
            "apt 1\nPriority: important",
        ],
    );
    u.extend(index(
        "noble-updates",
        &[
            "base-files 1ubuntu1\nEssential: yes\nPriority: required",
            "newcomer 1\nPriority: required",
            "libc6 2ubuntu1\nPriority: required",
        ],
    ));
    let plan = resolve(&u, &select(Variant::Minbase, &["apt"])).unwrap();
    assert_eq!(
        names(&plan),
        ["apt=1", "base-files=1ubuntu1", "libc6=2ubuntu1"]
    );
}

#[test]
fn virtual_include_needs_a_single_provider() {
    let u = index(
        "noble",
        &with_base(&["mawk 1\nProvides: awk", "gawk 1\nProvides: awk, gnu-awk"]),
    );
    // One provider: apt selects it instead.
    assert_eq!(resolve_names(&u, &["gnu-awk"]), ["base-files=1", "gawk=1"]);
    // Several: apt refuses and asks to choose.
    let err = resolve(&u, &select(Variant::Essential, &["awk"])).unwrap_err();
    assert!(err.to_string().contains("provided by gawk, mawk"), "{err}");
}

#[test]
fn long_dependency_chains_resolve() {
    // 2 900 packages, each depending on the next: far deeper than any real archive, just
    // under apt's recursion limit.
    let stanzas: Vec<&'static str> = (0..2900)
        .map(|i| {
            let s = if i < 2899 {
                format!("link{i} 1\nDepends: link{}", i + 1)
            } else {
                format!("link{i} 1")
            };
            &*Box::leak(s.into_boxed_str())
        })
        .collect();
    let u = index("noble", &with_base(&stanzas));
    assert_eq!(resolve_names(&u, &["link0"]).len(), 2901);
}

/// apt marks what it pulled in as a dependency in the second run (includes, required) as
/// automatically installed; the Essential run (dpkg, in mmdebstrap) and what was asked for by
/// name are not marked.
#[test]
fn auto_installed_marks_are_what_apt_pulled_in_for_the_second_run() {
    let u = index(
        "noble",
        &[
            "base 1\nEssential: yes\nPriority: required\nDepends: libbase",
            "libbase 1\nPriority: required",
            "req 1\nPriority: required\nDepends: libreq",
            "libreq 1",
            "apt 1\nPriority: important\nDepends: libapt, libbase",
            "libapt 1",
            "tool 1\nDepends: libtool | libother, libbase",
            "libtool 1",
            "libother 1",
        ],
    );
    let plan = resolve(&u, &select(Variant::Minbase, &["tool"])).expect("resolves");
    assert_eq!(plan.auto_installed, ["libapt", "libreq", "libtool"]);
    assert_eq!(
        plan.apt_extended_states("amd64"),
        "Package: libapt\nArchitecture: amd64\nAuto-Installed: 1\n\n\
         Package: libreq\nArchitecture: amd64\nAuto-Installed: 1\n\n\
         Package: libtool\nArchitecture: amd64\nAuto-Installed: 1\n\n"
    );
}
