//! The `ingot` command line: parses arguments and calls the library. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use ingot::build::{self, BuildOptions, CommonOptions, OutputFormat};

/// Build golden, reproducible Ubuntu LXC images without Docker and without root.
#[derive(Parser)]
#[command(name = "ingot", version, about, long_about = None)]
struct Cli {
    /// No progress output (errors still go to stderr).
    #[arg(long, short, global = true, env = "INGOT_QUIET")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// The recipe: its folder or its recipe.toml.
    recipe: PathBuf,
    /// Use this archive root for every suite (http://, https:// or file://), e.g. a local mirror.
    #[arg(long, env = "INGOT_MIRROR")]
    mirror: Option<String>,
    /// Accept a Release whose Valid-Until is in the past (snapshot archives).
    #[arg(long, env = "INGOT_ALLOW_EXPIRED")]
    allow_expired: bool,
    /// Content-addressed download cache [default: $XDG_CACHE_HOME/ingot].
    #[arg(long, env = "INGOT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, short = 'j', env = "INGOT_JOBS", default_value_t = 8)]
    jobs: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the archive and print the resolved package set.
    ///
    /// Example: ingot resolve recipes/ubuntu-24.04 --json
    Resolve {
        #[command(flatten)]
        source: SourceArgs,
        /// Print JSON (one object) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Resolve, then download every package into the cache (verified by SHA-256).
    ///
    /// Example: ingot fetch recipes/ubuntu-24.04 --cache-dir /var/cache/ingot
    Fetch {
        #[command(flatten)]
        source: SourceArgs,
        /// Print the totals as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build the image: resolve, fetch, assemble rootless, provision, export, publish.
    ///
    /// Example: ingot build recipes/ubuntu-24.04 --out out --next
    Build {
        #[command(flatten)]
        source: SourceArgs,
        /// Output directory for artifacts (or the tree itself with --format dir).
        #[arg(long, short, env = "INGOT_OUT", default_value = "out")]
        out: PathBuf,
        /// `tar` publishes <name>-v<N>.tar.gz; `dir` leaves the assembled tree at --out.
        #[arg(long, value_enum, default_value_t = OutputFormat::Tar)]
        format: OutputFormat,
        /// Publish as the next version after the highest one in --out (the default).
        #[arg(long, conflicts_with = "version")]
        next: bool,
        /// Publish exactly this version; refused if it exists.
        #[arg(long)]
        version: Option<u32>,
        /// gzip (Proxmox), zstd, xz or none.
        #[arg(long, value_enum, default_value_t = ingot::export::compress::Compression::Gzip, env = "INGOT_COMPRESSION")]
        compression: ingot::export::compress::Compression,
        /// Keep the staging tree here for debugging instead of removing it.
        #[arg(long)]
        keep_staging: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a tarball against the golden-image contract.
    ///
    /// Example: ingot verify out/ubuntu-24.04-lxc-rootfs-v1.tar.gz --json
    Verify {
        /// The image tarball (.tar, .tar.gz, .tar.zst, .tar.xz).
        tarball: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that this host can build rootless, and say how to fix what is missing.
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Internal: the namespaced build child.
    #[command(name = "__stage", hide = true)]
    Stage { spec: PathBuf },
}

fn common(s: &SourceArgs, quiet: bool) -> CommonOptions {
    CommonOptions {
        recipe: s.recipe.clone(),
        mirror: s.mirror.clone(),
        allow_expired: s.allow_expired,
        cache_dir: s.cache_dir.clone(),
        jobs: s.jobs,
        quiet,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Stage { spec } => {
            // The stage hands its finished tree to the exporter (it never calls export itself).
            let export: ingot::stage::TreeExporter = |root, out, epoch| {
                ingot::export::tar::write_rootfs_tar(root, out, epoch)
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            return ExitCode::from(ingot::stage::child_main(&spec, export).clamp(0, 255) as u8);
        }
        Command::Resolve { source, json } => build::cmd_resolve(&common(&source, quiet), json),
        Command::Fetch { source, json } => build::cmd_fetch(&common(&source, quiet), json),
        Command::Build {
            source,
            out,
            format,
            next,
            version,
            compression,
            keep_staging,
            json,
        } => build::cmd_build(
            &common(&source, quiet),
            &BuildOptions {
                out,
                format,
                next,
                version,
                compression,
                keep_staging,
                json,
            },
        ),
        Command::Verify { tarball, json } => build::cmd_verify(&tarball, json),
        Command::Doctor { json } => build::cmd_doctor(json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ingot: error: {}", build::one_line(&e));
            ExitCode::from(build::exit_code(&e))
        }
    }
}
