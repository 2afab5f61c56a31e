//! Fuzzing without a fuzzing engine: property tests (proptest) that mutate the committed seed
//! corpus in `tests/fuzz-corpus/<target>/` (bit flips, byte inserts and deletes, chunk
//! duplication, splices of hostile tokens) and feed the result to ingot's parsers of hostile
//! input. A property failing, or any panic (an index out of range, an arithmetic overflow —
//! these are debug builds), is a crash: proptest shrinks it and the test fails, printing the
//! input and the RNG seed.
//!
//! Targets: the deb822 `Release`/`InRelease` and `Packages` parsers, the Debian version
//! comparator, the `.deb` reader (ar + control/data tar, extraction into a confined root), the
//! tar-path normaliser, and the sshd configuration evaluator (through `verify`).
//!
//! Budget: by default each target runs one batch of cases (a quick regression run in
//! `cargo test`). With `INGOT_FUZZ_SECONDS=N` each target keeps running fresh batches with new
//! random seeds until N seconds have passed; `scripts/fuzz.sh` runs every target that way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Cases per batch.
const BATCH: u32 = 192;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// The lines of every seed of `target` (for targets whose seeds are lists).
fn corpus_lines(target: &str) -> Vec<String> {
    corpus(target)
        .iter()
        .flat_map(|f| {
            String::from_utf8_lossy(f)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Token(usize, usize),
}

/// Bytes that tend to matter to these parsers.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\n\n",
    b"\r\n",
    b" ",
    b":",
    b"=",
    b"\"",
    b"*",
    b"?",
    b"[",
    b"]",
    b"/",
    b"//",
    b"./",
    b"../",
    b"~",
    b"-",
    b"+",
    b"0",
    b"99999999999999999999",
    b"\xff\xfe",
    b"\0",
    b"Include ",
    b"Match ",
    b"-----BEGIN PGP SIGNATURE-----\n",
    b"SHA256:\n",
    b"Date: Mon, 32 Foo 1999 25:61:61 UTC\n",
    b"Package: ",
    b"!<arch>\n",
    b"ustar\0",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), 1usize..256).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Edit::Token(i, t)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *e {
            Edit::Flip(i, b) if !v.is_empty() => {
                let n = v.len();
                v[i % n] ^= b | 1;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, b) => {
                let i = at(i, v.len());
                v.insert(i, b);
            }
            Edit::Delete(i, n) => {
                let i = at(i, v.len());
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Edit::Duplicate(i, n) => {
                let i = at(i, v.len());
                let end = (i + n).min(v.len());
                let chunk = v[i..end].to_vec();
                v.splice(i..i, chunk);
            }
            Edit::Token(i, t) => {
                let i = at(i, v.len());
                let token = TOKENS[t % TOKENS.len()];
                v.splice(i..i, token.iter().copied());
            }
        }
    }
    v
}

/// A seed of `target`, edited 0 to 8 times.
fn mutated(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    (0..seeds.len(), prop::collection::vec(edit(), 0..8))
        .prop_map(move |(i, edits)| apply(&seeds[i], &edits))
}

/// Run `property` on `strategy`: one batch, or batches with fresh seeds until
/// `INGOT_FUZZ_SECONDS` have passed. Fails on the first crash.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("INGOT_FUZZ_SECONDS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("INGOT_FUZZ_SECONDS={s:?}: expected whole seconds"))
        })
        .map(Duration::from_secs);
    let start = Instant::now();
    let mut cases: u64 = 0;
    let mut batch: u64 = 0;
    loop {
        let mut seed = [0u8; 32];
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        seed[..16].copy_from_slice(&nanos.to_le_bytes());
        seed[16..24].copy_from_slice(&batch.to_le_bytes());
        let config = Config {
            cases: BATCH,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        match runner.run(&strategy, &property) {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => panic!(
                "fuzz {name}: crash after {cases} cases (seed {}): {why}\ninput: {input:?}",
                hex::encode(seed)
            ),
            Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted: {why}"),
        }
        cases += u64::from(BATCH);
        batch += 1;
        match budget {
            Some(b) if start.elapsed() < b => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.1} s, 0 crashes",
        start.elapsed().as_secs_f64()
    );
}

const URL: &str = "http://fuzz.invalid/ubuntu/dists/noble/InRelease";

#[test]
fn fuzz_release_parser() {
    fuzz("release", mutated("release"), |bytes| {
        // Whatever the bytes: a verdict, and a refusal names the URL.
        if let Err(e) = ingot::archive::release::open_inrelease(URL, &bytes) {
            prop_assert!(e.to_string().contains(URL), "{e}");
        }
        let text = String::from_utf8_lossy(&bytes);
        match ingot::archive::release::parse_release(URL, &text) {
            Ok(fields) => {
                for (path, (_, sha)) in &fields.sha256 {
                    prop_assert!(!path.is_empty());
                    prop_assert_eq!(sha.len(), 64, "{}", sha);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(URL), "{e}"),
        }
        Ok(())
    });
}

#[test]
fn fuzz_packages_parser() {
    fuzz("packages", mutated("packages"), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(packages) =
            ingot::archive::packages::parse_packages(&text, "noble", "http://fuzz.invalid/")
        {
            for p in packages {
                prop_assert!(!p.name.is_empty() && !p.version.is_empty());
                prop_assert!(!p.filename.is_empty());
            }
        }
        Ok(())
    });
}

/// A version-ish string: pieces of the seed versions and version characters.
fn version() -> impl Strategy<Value = String> {
    let seeds = corpus_lines("version");
    prop_oneof![
        (0..seeds.len()).prop_map(move |i| seeds[i].clone()),
        "[0-9]{0,3}:?[0-9a-z.+~]{0,8}(-[0-9a-z.+~]{0,6})?",
    ]
}

#[test]
fn fuzz_version_comparator_is_a_total_order() {
    use std::cmp::Ordering;
    fuzz("version", (version(), version(), version()), |(a, b, c)| {
        let parse = |s: &str| s.parse::<debversion::Version>().ok();
        let (Some(a), Some(b), Some(c)) = (parse(&a), parse(&b), parse(&c)) else {
            return Ok(());
        };
        prop_assert_eq!(a.cmp(&a), Ordering::Equal);
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        if a <= b && b <= c {
            prop_assert!(a <= c, "not transitive: {} <= {} <= {}", a, b, c);
        }
        // Printing and parsing again gives an equal version.
        let again = parse(&a.to_string());
        prop_assert_eq!(again.map(|v| v.cmp(&a)), Some(Ordering::Equal));
        Ok(())
    });
}

#[test]
fn fuzz_deb_reader_and_extraction_stay_inside_the_root() {
    fuzz("deb", mutated("deb"), |bytes| {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("fuzz.deb");
        std::fs::File::create(&deb)
            .and_then(|mut f| f.write_all(&bytes))
            .unwrap();
        if let Err(e) = ingot::deb::read_control(&deb) {
            prop_assert!(e.to_string().contains("fuzz.deb"), "{e}");
        }
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let _ = ingot::stage::install::unpack::extract_deb(&root, "seed", &deb);
        // Whatever was extracted, nothing appeared next to the root.
        let mut around: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        around.sort();
        prop_assert_eq!(around, vec!["fuzz.deb", "outside", "root"]);
        prop_assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        Ok(())
    });
}

#[test]
fn fuzz_tar_path_normaliser() {
    let lines = corpus_lines("tarpath");
    let path = prop_oneof![
        (0..lines.len()).prop_map(move |i| lines[i].clone()),
        "[./a-z]{0,24}",
    ];
    fuzz("tarpath", path, |raw| {
        let (p, hostile) = ingot::verify::normalise_tar_path(&raw);
        // By component: no empty or `.` components, no leading or trailing slash.
        prop_assert!(!p.starts_with('/') && !p.ends_with('/'), "{p}");
        prop_assert!(
            p.is_empty() || p.split('/').all(|c| !c.is_empty() && c != "."),
            "{p}"
        );
        // Idempotent, and the same components as a path library sees.
        prop_assert_eq!(ingot::verify::normalise_tar_path(&p).0, p.clone());
        let parts: Vec<String> = Path::new(&raw)
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                std::path::Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        prop_assert_eq!(p.clone(), parts.join("/"));
        prop_assert_eq!(
            hostile,
            raw.starts_with('/') || parts.iter().any(|c| c == "..")
        );
        Ok(())
    });
}

/// A tar holding `etc/ssh/sshd_config` with `config` and one drop-in.
fn sshd_image(config: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("etc/ssh/sshd_config", config);
    add(
        "etc/ssh/sshd_config.d/10-a.conf",
        b"PasswordAuthentication no\n",
    );
    b.into_inner().unwrap()
}

/// What sshd takes as the global PasswordAuthentication of a file without `Include`: the
/// first value outside `Match`, else the default `yes`. `None` when that value is not a plain
/// word (quotes, control bytes: sshd's own parser may reject the file; ingot must then not
/// call it `no`, which the property checks separately).
fn reference_password_authentication(config: &str) -> Option<String> {
    for line in config.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(line.len());
        let keyword = line[..end].to_ascii_lowercase();
        if keyword == "match" {
            break;
        }
        if keyword == "passwordauthentication" {
            let rest = line[end..].trim_start();
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
            let value: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            if value.is_empty() || value.starts_with('#') {
                continue;
            }
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.to_string(),
                None => value,
            };
            let plain =
                !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            return plain.then(|| value.to_ascii_lowercase());
        }
    }
    Some("yes".into())
}

#[test]
fn fuzz_sshd_config_evaluator() {
    let line = prop_oneof![
        Just("PasswordAuthentication yes".to_string()),
        Just("passwordauthentication=no".to_string()),
        Just("PasswordAuthentication \"no\"".to_string()),
        Just("KbdInteractiveAuthentication no".to_string()),
        Just("PermitRootLogin prohibit-password".to_string()),
        Just("Match User x".to_string()),
        Just("# PasswordAuthentication no".to_string()),
        Just("".to_string()),
        Just("Include /etc/ssh/sshd_config.d/*.conf".to_string()),
        "Include [a-z*?/.\\[\\]-]{0,40}",
        "[A-Za-z]{1,12}[ =\t][a-z\"*]{0,8}",
    ];
    let configs = prop_oneof![
        prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n").into_bytes()),
        mutated("sshd"),
    ];
    fuzz("sshd", configs, |config| {
        let image = sshd_image(&config);
        let report = ingot::verify::verify_reader(Path::new("fuzz.tar"), &image[..])
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = String::from_utf8_lossy(&config);
        let flagged = report
            .violations_of(ingot::verify::Rule::SshdConfig)
            .any(|v| v.detail.contains("effective PasswordAuthentication"));
        if !text.to_ascii_lowercase().contains("include") {
            match reference_password_authentication(&text) {
                Some(value) => {
                    prop_assert_eq!(flagged, value != "no", "config:\n{}\n{}", text, report)
                }
                // Not a plain `no`: whatever it is, it must not pass as `no`.
                None => prop_assert!(flagged, "config:\n{}\n{}", text, report),
            }
        }
        Ok(())
    });
}
