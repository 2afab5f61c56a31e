//! The `ingot` command line: parses arguments and hands each verb to [`cli`], which calls the
//! library and renders the result. Nothing else lives here.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use ingot::build::{self, BuildOptions, CommonOptions, OutputFormat};
use ingot::stage::staging::StagingMedium;

/// `ingot --version`: the crate version and the commit it was built from (see `build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("INGOT_GIT_COMMIT"),
    ")"
);

/// Build golden, reproducible Ubuntu LXC images without Docker and without root.
#[derive(Parser)]
#[command(name = "ingot", version = VERSION, about, long_about = None)]
struct Cli {
    /// No progress output (errors still go to stderr).
    #[arg(
        long,
        short,
        global = true,
        env = "INGOT_QUIET",
        conflicts_with = "verbose"
    )]
    quiet: bool,
    /// Also stream the build log (dpkg's and the scripts' output) to stderr.
    #[arg(long, short, global = true, env = "INGOT_VERBOSE")]
    verbose: bool,
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
    /// Accept a signed Release older than the newest one seen for its mirror and suite (a
    /// deliberate rollback; otherwise refused as a replay).
    #[arg(long, env = "INGOT_ALLOW_OLDER", value_parser = clap::builder::FalseyValueParser::new())]
    allow_older: bool,
    /// Content-addressed download cache [default: $XDG_CACHE_HOME/ingot].
    #[arg(long, env = "INGOT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Parallel downloads.
    #[arg(long, short = 'j', env = "INGOT_JOBS", default_value_t = 8)]
    jobs: usize,
    /// Trust only the CA certificates of this PEM file for https:// mirrors (an internal
    /// mirror under a private CA), e.g. --ca-file /etc/ssl/private-mirror-ca.pem.
    #[arg(long, env = "INGOT_CA_FILE")]
    ca_file: Option<PathBuf>,
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
        /// Keep the staging tree for debugging at DIR/rootfs (DIR is created, mode 0700).
        #[arg(long, value_name = "DIR")]
        keep_staging: Option<PathBuf>,
        /// Neither restore nor store the configured tree (after dpkg) in the cache.
        #[arg(long, env = "INGOT_NO_BASE_CACHE")]
        no_base_cache: bool,
        /// Where the staging tree lives: `auto` puts a tar build's tree on a private tmpfs
        /// when it fits in a quarter of the available memory, else on disk.
        #[arg(long, value_enum, default_value_t = StagingMedium::Auto, env = "INGOT_STAGING")]
        staging: StagingMedium,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Install exactly the set of the recipe's ingot.lock, with its epoch; refuse,
        /// naming what differs, if the recipe, a script or any file changed.
        #[arg(long, env = "INGOT_LOCKED")]
        locked: bool,
    },
    /// Write recipes/<name>/ingot.lock: the signed InReleases and the exact package set.
    ///
    /// Example: ingot lock recipes/ubuntu-24.04 && ingot lock --check recipes/ubuntu-24.04
    Lock {
        #[command(flatten)]
        source: SourceArgs,
        /// Write nothing: exit 1 when the lock no longer matches the recipe.
        #[arg(long)]
        check: bool,
    },
    /// Write a self-contained partial archive of the locked set into DIR.
    ///
    /// Example: ingot mirror recipes/ubuntu-24.04 --to /srv/ingot-mirror
    Mirror {
        #[command(flatten)]
        source: SourceArgs,
        /// The directory to write (a new or an earlier mirror directory).
        #[arg(long)]
        to: PathBuf,
    },
    /// List the packages of the lock (or newest manifest) that today's archive has newer;
    /// exit 1 when a rebuild is due.
    ///
    /// Example: ingot outdated recipes/ubuntu-24.04 --json
    Outdated {
        #[command(flatten)]
        source: SourceArgs,
        /// Where to look for the newest manifest when the recipe has no ingot.lock.
        #[arg(long, short, env = "INGOT_OUT", default_value = "out")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage the download and base cache.
    ///
    /// Example: ingot cache prune --max-size 2G
    Cache {
        #[command(subcommand)]
        action: CacheAction,
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
    /// Upload an image to Proxmox storage as a container template, through the API with a token.
    ///
    /// The secret comes from PM_API_TOKEN_SECRET or --token-secret-file, never from a flag.
    ///
    /// Example: PM_API_URL=https://pve1:8006/api2/json PM_API_TOKEN_ID='ingot@pve!upload'
    /// PM_API_TOKEN_SECRET=… PM_NODE=pve1 PM_STORAGE=local ingot upload
    /// out/ubuntu-24.04-lxc-rootfs-v3.tar.gz --ca-file pve-root-ca.pem
    Upload(UploadArgs),
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

#[derive(Args)]
struct UploadArgs {
    /// The image tarball (.tar.gz, .tar.zst, .tar.xz, .tar.bz2, .tar).
    tarball: PathBuf,
    /// API root, e.g. https://proxmox1:8006/api2/json.
    #[arg(long, env = "PM_API_URL")]
    api_url: Option<String>,
    /// API token id: user@realm!tokenname.
    #[arg(long, env = "PM_API_TOKEN_ID")]
    token_id: Option<String>,
    /// Read the token secret from this file (else from PM_API_TOKEN_SECRET).
    #[arg(long)]
    token_secret_file: Option<PathBuf>,
    /// Node, or comma-separated nodes for node-local storage (pve1,pve2).
    #[arg(long, env = "PM_NODE")]
    node: Option<String>,
    /// Storage id, e.g. local.
    #[arg(long, env = "PM_STORAGE")]
    storage: Option<String>,
    /// Trust only this CA (PEM), e.g. the cluster's /etc/pve/pve-root-ca.pem.
    #[arg(long, env = "PM_TLS_CA")]
    ca_file: Option<PathBuf>,
    /// Pin the server certificate by SHA-256 fingerprint (AB:CD:…, as `pvenode cert info` shows).
    #[arg(long, env = "PM_TLS_FINGERPRINT")]
    fingerprint: Option<String>,
    /// Do not check the server certificate (only when no --fingerprint or --ca-file is set; warns).
    #[arg(long, env = "PM_TLS_INSECURE")]
    insecure: bool,
    /// Skip the golden-contract check (the .sha256 sidecar is still checked).
    #[arg(long)]
    no_verify: bool,
    /// Retries of transient failures (connection errors, 5xx).
    #[arg(long, env = "PM_RETRIES", default_value_t = 3)]
    retries: u32,
    /// Seconds to wait for each upload task to end.
    #[arg(long, env = "PM_TASK_TIMEOUT", default_value_t = 3600)]
    task_timeout: u64,
    /// Print volid, size and checksum as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CacheAction {
    /// Remove leftovers, then least recently used entries until the cache fits --max-size.
    Prune {
        /// Cache directory [default: $XDG_CACHE_HOME/ingot].
        #[arg(long, env = "INGOT_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Bytes to keep at most, with an optional K, M or G suffix (0 empties the cache).
        #[arg(long, default_value = "4G", value_parser = parse_size)]
        max_size: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `123`, `10K`, `512M`, `4G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s.trim()[..i], c.to_ascii_uppercase()),
        _ => (s.trim(), 'B'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 500M or 4G"))?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err(format!("{s:?}: the unit must be K, M, G or T")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn common(s: &SourceArgs, quiet: bool) -> CommonOptions {
    CommonOptions {
        recipe: s.recipe.clone(),
        mirror: s.mirror.clone(),
        allow_expired: s.allow_expired,
        allow_older: s.allow_older,
        cache_dir: s.cache_dir.clone(),
        jobs: s.jobs,
        quiet,
        ca_file: s.ca_file.clone(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (quiet, verbose) = (cli.quiet, cli.verbose);
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
        Command::Resolve { source, json } => cli::resolve(&common(&source, quiet), verbose, json),
        Command::Fetch { source, json } => cli::fetch(&common(&source, quiet), verbose, json),
        Command::Build {
            source,
            out,
            format,
            next,
            version,
            compression,
            keep_staging,
            no_base_cache,
            staging,
            json,
            locked,
        } => cli::build(
            &common(&source, quiet),
            &BuildOptions {
                out,
                format,
                next,
                version,
                compression,
                keep_staging,
                no_base_cache,
                staging,
                json,
                locked,
            },
            verbose,
        ),
        Command::Verify { tarball, json } => cli::verify(&tarball, json),
        Command::Doctor { json } => cli::doctor(json),
        Command::Upload(a) => ingot::upload::cmd_upload(
            &ingot::upload::UploadCommand {
                tarball: a.tarball,
                api_url: a.api_url,
                token_id: a.token_id,
                token_secret_file: a.token_secret_file,
                node: a.node,
                storage: a.storage,
                ca_file: a.ca_file,
                fingerprint: a.fingerprint,
                insecure: a.insecure,
                no_verify: a.no_verify,
                retries: a.retries,
                task_timeout: a.task_timeout,
                json: a.json,
                quiet,
            },
            cli::render::reporter(quiet, verbose).as_ref(),
        ),
        Command::Lock { source, check } => ingot::lock::cmd_lock(
            &common(&source, quiet),
            check,
            cli::render::reporter(quiet, verbose).as_ref(),
        ),
        Command::Mirror { source, to } => ingot::mirror::cmd_mirror(
            &common(&source, quiet),
            &to,
            cli::render::reporter(quiet, verbose).as_ref(),
        ),
        Command::Outdated { source, out, json } => ingot::outdated::cmd_outdated(
            &common(&source, quiet),
            &out,
            json,
            cli::render::reporter(quiet, verbose).as_ref(),
        ),
        Command::Cache {
            action:
                CacheAction::Prune {
                    cache_dir,
                    max_size,
                    json,
                },
        } => cli::cache_prune(cache_dir, max_size, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ingot: error: {}", build::one_line(&e));
            ExitCode::from(build::exit_code(&e))
        }
    }
}
