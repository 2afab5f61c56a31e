//! Signed provenance and `ingot rebuild` on a hermetic signed archive of real `.deb`s:
//! every build writes `<artifact>.provenance.json` (DSSE, in-toto Statement v1, SLSA v1); an
//! independent DSSE verifier (Python's `cryptography`, `scripts/dsse-verify.py`) accepts it;
//! `verify --provenance` refuses a tampered tarball, a tampered envelope and another key;
//! `rebuild` of a locked build from an `ingot mirror` says identical with no network, and
//! refuses a recipe whose script changed by one byte, naming it.
//!
//! Needs root (the builds run in namespaces; `unshare -n`), `python3` with `cryptography`
//! (Debian: python3-cryptography).

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mini_recipe::{
    INGOT, arg, assert_ok, ingot, mini_recipe, require_build_privileges, sha256, stdout_path,
};
use support::{FixtureOptions, serve_http};

fn python(args: &[&str]) -> Output {
    Command::new("python3").args(args).output().unwrap()
}

fn require_python_cryptography() {
    let o = python(&[
        "-c",
        "import cryptography.hazmat.primitives.asymmetric.ed25519",
    ]);
    assert!(
        o.status.success(),
        "python3 with `cryptography` is needed for the independent DSSE check \
         (apt-get install -y python3-cryptography): {o:?}"
    );
}

fn verifier() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dsse-verify.py")
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn envelope_of(image: &Path) -> PathBuf {
    PathBuf::from(format!("{}.provenance.json", image.display()))
}

/// The statement of an envelope, without checking anything.
fn payload(envelope: &Path) -> serde_json::Value {
    let env: serde_json::Value = serde_json::from_slice(&fs::read(envelope).unwrap()).unwrap();
    let script = "import base64,json,sys; e=json.load(open(sys.argv[1])); \
                  sys.stdout.write(base64.b64decode(e['payload']).decode())";
    let o = python(&["-c", script, arg(envelope)]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Copy an image and its sidecars into `dir`.
fn copy_set(image: &Path, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let name = image.file_name().unwrap().to_string_lossy().into_owned();
    for e in fs::read_dir(image.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n.starts_with(&name) {
            fs::copy(&p, dir.join(&n)).unwrap();
        }
    }
    dir.join(name)
}

#[test]
fn signed_provenance_verifies_independently_and_tampering_is_refused() {
    require_build_privileges();
    require_python_cryptography();
    let f = mini_recipe(&[], &[], FixtureOptions::default());
    let mirror = f.archive.file_url();
    let keys = f.dir.join("keys");
    fs::create_dir_all(&keys).unwrap();

    // `ingot key generate`: a 0600 PKCS#8 private key and its SPKI public key.
    let key = keys.join("signing.pem");
    let o = ingot(&["key", "generate", "--out", arg(&key)]);
    assert_ok(&o);
    let public = PathBuf::from(format!("{}.pub", key.display()));
    assert_eq!(stdout_path(&o), public);
    let mode = fs::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(
        !ingot(&["key", "generate", "--out", arg(&key)])
            .status
            .success()
    );

    // Another key, written by Python's `cryptography` as OpenSSL does (PKCS#8 PEM): the
    // format `--sign-key` reads whoever wrote it.
    let other = keys.join("other.pem");
    let keygen = "import sys; from cryptography.hazmat.primitives import serialization as s; \
               from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as K; \
               k=K.generate(); \
               open(sys.argv[1],'wb').write(k.private_bytes(s.Encoding.PEM,s.PrivateFormat.PKCS8,s.NoEncryption())); \
               open(sys.argv[1]+'.pub','wb').write(k.public_key().public_bytes(s.Encoding.PEM,s.PublicFormat.SubjectPublicKeyInfo))";
    let o = python(&["-c", keygen, arg(&other)]);
    assert!(o.status.success(), "{o:?}");
    let other_public = PathBuf::from(format!("{}.pub", other.display()));

    let build = |out: &str, key: &Path| {
        let o = ingot(&[
            "build",
            arg(&f.recipe),
            "--mirror",
            &mirror,
            "--cache-dir",
            arg(&f.dir.join("cache")),
            "--out",
            arg(&f.dir.join(out)),
            "--sign-key",
            arg(key),
        ]);
        assert_ok(&o);
        stdout_path(&o)
    };
    let image = build("out-a", &key);
    let envelope = envelope_of(&image);
    assert!(envelope.is_file(), "no {}", envelope.display());
    let text = fs::read_to_string(&envelope).unwrap();
    assert!(!text.contains("PRIVATE KEY"));

    // The independent verifier: signature (PAE + Ed25519), statement, subject, and every
    // installed package among the resolved dependencies with the SHA-256 of its .deb.
    let o = python(&[
        arg(&verifier()),
        arg(&image),
        arg(&public),
        "--mirror-dir",
        arg(&f.mirror),
    ]);
    assert!(o.status.success(), "independent verifier: {o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: "));
    // It has teeth: under the other key it fails.
    let o = python(&[arg(&verifier()), arg(&image), arg(&other_public)]);
    assert_eq!(code(&o), Some(1), "{o:?}");

    let st = payload(&envelope);
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(st["subject"][0]["digest"]["sha256"], sha256(&image));
    let def = &st["predicate"]["buildDefinition"];
    assert_eq!(
        def["buildType"],
        "https://ingot.invalid/provenance/rootfs-build/v1"
    );
    let files = &def["externalParameters"]["files"];
    assert_eq!(
        files["provision.sh"],
        sha256(&f.recipe.join("provision.sh"))
    );
    assert_eq!(files["recipe.toml"], sha256(&f.recipe.join("recipe.toml")));
    let deps = def["resolvedDependencies"].as_array().unwrap();
    assert!(
        deps.iter()
            .any(|d| d["uri"].as_str().unwrap().ends_with("dists/mini/InRelease"))
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.manifest.json", image.display())).unwrap())
            .unwrap();
    for p in manifest["packages"].as_array().unwrap() {
        assert!(
            deps.iter()
                .any(|d| d["name"] == p["name"] && d["digest"]["sha256"] == p["sha256"]),
            "{} is not among the resolved dependencies",
            p["name"]
        );
    }
    assert!(
        st["predicate"]["runDetails"]["builder"]["version"]["ingot"].is_string(),
        "{st}"
    );

    // `ingot verify --provenance` accepts it ...
    let verify = |image: &Path, key: &Path| {
        Command::new(INGOT)
            .args(["verify", arg(image), "--provenance", "--key", arg(key)])
            .output()
            .unwrap()
    };
    let o = verify(&image, &public);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("provenance: "));

    // ... and refuses another key,
    let o = verify(&image, &other_public);
    assert_eq!(code(&o), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("no signature verifies"),
        "{}",
        stderr(&o)
    );

    // a tarball whose bytes changed (recompressed: the same valid image, other bytes),
    let recompressed = copy_set(&image, &f.dir.join("tampered-tarball"));
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{0}' | gzip -1 -n > '{0}.new' && mv '{0}.new' '{0}'",
            recompressed.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = verify(&recompressed, &public);
    assert_eq!(code(&o), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("the subject") && stderr(&o).contains(&*recompressed.to_string_lossy()),
        "{}",
        stderr(&o)
    );

    // an envelope whose payload changed (one resolved .deb's digest),
    let edited = copy_set(&image, &f.dir.join("tampered-envelope"));
    let edit = "import base64,json,sys; p=sys.argv[1]; e=json.load(open(p)); \
                s=json.loads(base64.b64decode(e['payload'])); \
                d=s['predicate']['buildDefinition']['resolvedDependencies'][-1]; \
                d['digest']['sha256']='0'*64; \
                e['payload']=base64.b64encode(json.dumps(s).encode()).decode(); \
                json.dump(e,open(p,'w'))";
    let o = python(&["-c", edit, arg(&envelope_of(&edited))]);
    assert!(o.status.success(), "{o:?}");
    let o = verify(&edited, &public);
    assert_eq!(code(&o), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains(&*envelope_of(&edited).to_string_lossy())
            && stderr(&o).contains("no signature verifies"),
        "{}",
        stderr(&o)
    );

    // an SBOM beside it that names another image,
    let other_sbom = copy_set(&image, &f.dir.join("tampered-sbom"));
    let sbom = format!("{}.spdx.json", other_sbom.display());
    let text = fs::read_to_string(&sbom)
        .unwrap()
        .replace(&sha256(&image), &"1".repeat(64));
    fs::write(&sbom, text).unwrap();
    let o = verify(&other_sbom, &public);
    assert_eq!(code(&o), Some(1), "{o:?}");
    assert!(stderr(&o).contains(&sbom), "{}", stderr(&o));

    // and a tarball without provenance.
    let bare = copy_set(&image, &f.dir.join("no-envelope"));
    fs::remove_file(envelope_of(&bare)).unwrap();
    let o = verify(&bare, &public);
    assert_eq!(code(&o), Some(1), "{o:?}");
    assert!(stderr(&o).contains("no provenance"), "{}", stderr(&o));

    // A key that cannot be parsed is refused before anything is built (exit 2, naming it).
    let garbage = keys.join("garbage.pem");
    fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    let out = f.dir.join("out-refused");
    let o = ingot(&[
        "build",
        arg(&f.recipe),
        "--mirror",
        &mirror,
        "--cache-dir",
        arg(&f.dir.join("cache")),
        "--out",
        arg(&out),
        "--sign-key",
        arg(&garbage),
    ]);
    assert_eq!(code(&o), Some(2), "{o:?}");
    assert!(
        stderr(&o).contains(&*garbage.to_string_lossy()) && !stderr(&o).contains("not a key"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing may be written for a refused key");
    // The public key is not a signing key either.
    let o = ingot(&["verify", arg(&image), "--provenance", "--key", arg(&key)]);
    assert_eq!(code(&o), Some(2), "{o:?}");

    // Reproducible: a second build (another key) has the same payload but for
    // runDetails.metadata, and an openssl-format key signs as well.
    let second = build("out-b", &other);
    assert_eq!(sha256(&second), sha256(&image));
    let mut a = payload(&envelope);
    let mut b = payload(&envelope_of(&second));
    a["predicate"]["runDetails"]["metadata"] = serde_json::Value::Null;
    b["predicate"]["runDetails"]["metadata"] = serde_json::Value::Null;
    assert_eq!(a, b);
    let o = verify(&second, &other_public);
    assert_ok(&o);
}

#[test]
fn rebuild_from_an_ingot_mirror_is_identical_offline_and_a_changed_script_is_refused() {
    support::privilege::require_root("unshare -n, for a rebuild with no network at all");
    let f = mini_recipe(&[], &[], FixtureOptions::default());
    let (http, _server) = serve_http(&f.mirror);
    let o = ingot(&["lock", arg(&f.recipe), "--mirror", &http]);
    assert_ok(&o);
    let out = f.dir.join("out");
    let o = ingot(&[
        "build",
        arg(&f.recipe),
        "--locked",
        "--cache-dir",
        arg(&f.dir.join("cache")),
        "--out",
        arg(&out),
    ]);
    assert_ok(&o);
    let image = stdout_path(&o);
    let mirror = f.dir.join("offline-mirror");
    assert_ok(&ingot(&[
        "mirror",
        arg(&f.recipe),
        "--to",
        arg(&mirror),
        "--cache-dir",
        arg(&f.dir.join("cache-mirror")),
    ]));
    let listing = |dir: &Path| {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(&out);
    let tmp = f.dir.join("tmp");
    fs::create_dir_all(&tmp).unwrap();

    let rebuild = |image: &Path, cache: &str| {
        Command::new("unshare")
            .args([
                "-n",
                INGOT,
                "rebuild",
                arg(image),
                "--recipe",
                arg(&f.recipe),
            ])
            .args(["--mirror", &format!("file://{}", mirror.display())])
            .args(["--cache-dir", arg(&f.dir.join(cache)), "--quiet"])
            .env("TMPDIR", &tmp)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    };
    // No network, an empty cache: the mirror is enough, and the bytes are the same.
    let o = rebuild(&image, "cache-rebuild");
    assert_ok(&o);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(said.starts_with("identical: "), "{said}");
    assert_eq!(listing(&out), before, "a rebuild publishes nothing");
    assert!(
        listing(&tmp).is_empty(),
        "the rebuild's temporary directory is removed"
    );

    // An image that differs from what the recipe gives: one entry's mtime changed.
    let altered = copy_set(&image, &f.dir.join("altered"));
    let script = "import tarfile,sys,io,gzip; p=sys.argv[1]; \
                  src=tarfile.open(p,'r:gz'); buf=io.BytesIO(); \
                  dst=tarfile.open(fileobj=buf,mode='w',format=tarfile.PAX_FORMAT); \
                  [(setattr(m,'mtime',m.mtime-1) if m.name=='etc/os-release' else None, \
                    dst.addfile(m, src.extractfile(m) if m.isfile() else None)) for m in src]; \
                  dst.close(); open(p,'wb').write(gzip.compress(buf.getvalue(),mtime=0))";
    let o = python(&["-c", script, arg(&altered)]);
    assert!(o.status.success(), "{o:?}");
    let o = rebuild(&altered, "cache-rebuild");
    assert_eq!(code(&o), Some(1), "{o:?}");
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        said.starts_with("different: ") && said.contains("etc/os-release: mtime"),
        "{said}"
    );

    // One byte of provision.sh changed: refused before anything is built, naming the file.
    let provision = f.recipe.join("provision.sh");
    let mut bytes = fs::read(&provision).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    fs::write(&provision, bytes).unwrap();
    let o = rebuild(&image, "cache-refused");
    assert_eq!(code(&o), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.contains(&*provision.to_string_lossy()) && err.contains("differs"),
        "{err}"
    );
    assert!(!f.dir.join("cache-refused").join("sha256").exists());
}
