//! The binary's side of provenance: `ingot key generate`, `ingot verify --provenance --key`
//! and `ingot rebuild` — call the library, word the result, choose the exit code.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ingot::build::CommonOptions;
use ingot::provenance::keys::{PublicKey, SignKey};

use super::render;

/// `ingot key generate --out FILE`: FILE (mode 0600) and FILE.pub; prints the public key's
/// path and the key id.
pub fn key_generate(out: &Path) -> anyhow::Result<ExitCode> {
    let key = SignKey::generate()?;
    let public = key.write_pair(out)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", public.display())?;
    eprintln!(
        "ingot: wrote {} (private, mode 0600) and {}; keyid {}",
        out.display(),
        public.display(),
        key.keyid()
    );
    Ok(ExitCode::SUCCESS)
}

/// `ingot verify TARBALL --provenance --key PUB`: the golden contract and the provenance;
/// exit 1 naming what does not hold, 2 for a key or tarball that cannot be read.
pub fn verify(tarball: &Path, key: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let key = PublicKey::load(key)?;
    let report = match ingot::verify::verify_tarball(tarball) {
        Ok(report) => report,
        Err(e) if !json => return Err(e.into()),
        // `--json` prints JSON in every case, as `ingot verify --json` does.
        Err(_) => return super::verify(tarball, json, &ingot::verify::VerifyOptions::default()),
    };
    let provenance = ingot::provenance::verify_beside(tarball, &key);
    let ok = report.ok() && provenance.is_ok();
    let mut out = std::io::stdout().lock();
    if json {
        let mut doc: serde_json::Value = serde_json::from_str(&report.to_json())?;
        doc["provenance"] = match &provenance {
            Ok(check) => {
                let mut v = serde_json::to_value(check)?;
                v["ok"] = true.into();
                v
            }
            Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
        };
        doc["ok"] = ok.into();
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{report}")?;
        match &provenance {
            Ok(c) => writeln!(
                out,
                "provenance: {} verified under key {}: subject {} sha256 {}, which the \
                 manifest and the SBOM record too ({} resolved dependencies)",
                c.envelope.display(),
                c.keyid,
                c.subject,
                c.sha256,
                c.resolved_dependencies
            )?,
            Err(e) => writeln!(out, "provenance: FAILED: {e}")?,
        }
    }
    if let Err(e) = &provenance {
        eprintln!("ingot: error: {e}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `ingot rebuild TARBALL --recipe DIR`: "identical" (exit 0) or the first differing entries
/// (exit 1).
pub fn rebuild(
    o: &CommonOptions,
    tarball: &Path,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    let outcome = ingot::rebuild::rebuild(o, tarball, reporter.as_ref())?;
    drop(reporter);
    let mut out = std::io::stdout().lock();
    if json {
        let mut doc = serde_json::to_value(&outcome)?;
        doc["identical"] = outcome.identical().into();
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else if outcome.identical() {
        writeln!(
            out,
            "identical: {} (sha256 {}) rebuilt from {} and its lock",
            outcome.tarball.display(),
            outcome.sha256,
            o.recipe.display()
        )?;
    } else {
        writeln!(
            out,
            "different: {} has sha256 {}, the rebuild {}",
            outcome.tarball.display(),
            outcome.sha256,
            outcome.rebuilt_sha256
        )?;
        if let Some(d) = &outcome.differences {
            writeln!(
                out,
                "{} difference(s) ({} entries in the original, {} in the rebuild); the first:",
                d.count, d.original_entries, d.rebuilt_entries
            )?;
            for e in &d.first {
                writeln!(
                    out,
                    "  {}: {}: original {}, rebuilt {}",
                    e.path, e.field, e.original, e.rebuilt
                )?;
            }
            if d.count == 0 {
                writeln!(
                    out,
                    "  every entry is the same: the tar headers or the compressed stream differ"
                )?;
            }
        }
    }
    Ok(if outcome.identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
