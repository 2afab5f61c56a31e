//! Exports a directory the way a build does, for measuring and as a worked example of the
//! orchestrator's sequence: lock the output directory, claim the next version, write the tar
//! on one thread into a pipe, compress the pipe on another straight into the claim, publish.
//!
//! Usage: `export_tree <root> <out-dir> <image> [gzip|zstd|xz|none] [epoch]`

use std::path::PathBuf;

use ingot::artifact::{BuildInputs, OutputDir, VersionRequest};
use ingot::epoch::{BuildEpoch, EpochSource};
use ingot::export::compress::{Compression, compress_stream};
use ingot::export::tar::write_rootfs_tar;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: export_tree <root> <out-dir> <image> [gzip|zstd|xz|none] [epoch]";
    let root = PathBuf::from(args.next().ok_or(usage)?);
    let out_dir = PathBuf::from(args.next().ok_or(usage)?);
    let image = args
        .next()
        .and_then(|a| a.into_string().ok())
        .ok_or(usage)?;
    let kind = match args.next().and_then(|a| a.into_string().ok()).as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some("xz") => Compression::Xz,
        Some("none") => Compression::None,
        Some(other) => return Err(format!("unknown compression {other}").into()),
    };
    let epoch = match args.next().and_then(|a| a.into_string().ok()) {
        Some(s) => BuildEpoch(s.parse()?),
        None => BuildEpoch(1_700_000_000),
    };

    let out = match OutputDir::try_lock(&out_dir, &image)? {
        Some(out) => out,
        None => {
            eprintln!(
                "waiting for another build of {image} in {}",
                out_dir.display()
            );
            OutputDir::lock(&out_dir, &image)?
        }
    };
    let mut claim = out.claim(VersionRequest::Next, kind)?;
    let (mut reader, mut writer) = std::io::pipe()?;
    let tar = std::thread::spawn(move || write_rootfs_tar(&root, &mut writer, epoch));
    // On any error below, `claim` is dropped and its temp file removed.
    let compressed = compress_stream(kind, &mut reader, &mut claim)?;
    let stats = tar.join().map_err(|_| "tar thread panicked")??;
    let published = claim.publish(BuildInputs {
        recipe_digest: String::new(),
        build_epoch: epoch,
        epoch_source: EpochSource::SourceDateEpoch,
        suites: Vec::new(),
        packages: Vec::new(),
        stages: Vec::new(),
    })?;
    eprintln!(
        "{} entries, {} content bytes, {} tar bytes, {} compressed bytes",
        stats.entries, stats.content_bytes, stats.archive_bytes, compressed
    );
    println!("{}", published.path.display());
    Ok(())
}
