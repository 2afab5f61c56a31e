//! The `ingot` command line: parses arguments and hands each verb to [`cli`], which calls the
//! library and renders the result. Nothing else lives here.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use ingot::build::{BuildOptions, CommonOptions, OutputFormat};
use ingot::choice::NamedChoice;
use ingot::export::compress::Compression;
use ingot::stage::staging::StagingMedium;
use ingot::stage::usernet::Stack as NetworkStack;

/// clap's parser for a library choice: its names as the possible values (shown in `--help`
/// and completions), parsed by the library's own `FromStr`.
fn choice<T: NamedChoice + Send + Sync + Clone + 'static>()
-> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(T::CHOICES.iter().map(|(name, _)| *name)).map(|s| {
        T::CHOICES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .unwrap_or(T::CHOICES[0].1)
    })
}

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
        value_parser = clap::builder::FalseyValueParser::new(),
        conflicts_with = "verbose"
    )]
    quiet: bool,
    /// Also stream the build log (dpkg's and the scripts' output) to stderr.
    #[arg(long, short, global = true, env = "INGOT_VERBOSE", value_parser = clap::builder::FalseyValueParser::new())]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// The recipe: its name (looked up in ./recipes/, $XDG_CONFIG_HOME/ingot/recipes/,
    /// /usr/share/ingot/recipes/), its folder or its recipe.toml.
    recipe: PathBuf,
    #[command(flatten)]
    archive: ArchiveArgs,
}

/// Where and how the archive is read: the flags of every verb that reads one.
#[derive(Args, Clone)]
struct ArchiveArgs {
    /// Use this archive root for every suite (http://, https:// or file://), e.g. a local mirror.
    #[arg(long, env = "INGOT_MIRROR")]
    mirror: Option<String>,
    /// One suite's archive root, over --mirror (repeatable), e.g. Debian's separate security
    /// archive: --suite-mirror trixie-security=http://mirror.example/debian-security.
    #[arg(
        long = "suite-mirror",
        value_name = "SUITE=URL",
        env = "INGOT_SUITE_MIRRORS",
        value_delimiter = ','
    )]
    suite_mirrors: Vec<String>,
    /// Accept a Release whose Valid-Until is in the past (snapshot archives).
    #[arg(long, env = "INGOT_ALLOW_EXPIRED", value_parser = clap::builder::FalseyValueParser::new())]
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
        #[arg(long, value_parser = choice::<OutputFormat>(), default_value_t = OutputFormat::Tar)]
        format: OutputFormat,
        /// Publish as the next version after the highest one in --out (the default).
        #[arg(long, conflicts_with = "version")]
        next: bool,
        /// Publish exactly this version; refused if it exists.
        #[arg(long)]
        version: Option<u32>,
        /// gzip (Proxmox), zstd, xz or none.
        #[arg(long, value_parser = choice::<Compression>(), default_value_t = Compression::Gzip, env = "INGOT_COMPRESSION")]
        compression: Compression,
        /// Keep the staging tree for debugging at DIR/rootfs (DIR is created, mode 0700).
        #[arg(long, value_name = "DIR")]
        keep_staging: Option<PathBuf>,
        /// Neither restore nor store the configured tree (after dpkg) in the cache.
        #[arg(long, env = "INGOT_NO_BASE_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
        no_base_cache: bool,
        /// Where the staging tree lives: `auto` puts a tar build's tree on a private tmpfs
        /// when it fits in a quarter of the available memory, else on disk.
        #[arg(long, value_parser = choice::<StagingMedium>(), default_value_t = StagingMedium::Auto, env = "INGOT_STAGING")]
        staging: StagingMedium,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Install exactly the set of the recipe's ingot.lock, with its epoch; refuse,
        /// naming what differs, if the recipe, a script or any file changed.
        #[arg(long, env = "INGOT_LOCKED", value_parser = clap::builder::FalseyValueParser::new())]
        locked: bool,
        /// Also publish <name>-v<N>.oci.tar, an OCI image archive for `pct create` and
        /// registries (same layer bytes as the tarball; the recipe's `[image] oci = true`
        /// does the same). Example: ingot build recipes/ubuntu-24.04 --oci
        #[arg(long, env = "INGOT_OCI", value_parser = clap::builder::FalseyValueParser::new())]
        oci: bool,
        /// Sign <artifact>.provenance.json with this Ed25519 private key (PKCS#8 PEM, as
        /// `openssl genpkey -algorithm ed25519` or `ingot key generate` writes), e.g.
        /// --sign-key ~/.config/ingot/signing.pem.
        #[arg(long, env = "INGOT_SIGN_KEY")]
        sign_key: Option<PathBuf>,
        /// The user-mode network stack for a recipe's `[provision] network = true`: pasta
        /// (from passt) or slirp4netns; default: pasta if installed, else slirp4netns.
        #[arg(long, value_parser = choice::<NetworkStack>(), env = "INGOT_NETWORK_STACK")]
        network_stack: Option<NetworkStack>,
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
    ///
    /// With --provenance: also check <tarball>.provenance.json's signature under --key, that
    /// its subject is the tarball's SHA-256, and that the manifest and SBOM beside it record
    /// the same digest, e.g. ingot verify out/img-v1.tar.gz --provenance --key signing.pem.pub
    Verify {
        /// The image tarball (.tar, .tar.gz, .tar.zst, .tar.xz) or OCI archive (.oci.tar).
        tarball: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also check what Proxmox VE's `pct create` reads and writes (release files, /bin/sh's
        /// architecture, systemd for cgroup v2, /etc files it writes, /dev). Example:
        /// ingot verify --proxmox out/ubuntu-24.04-lxc-rootfs-v1.oci.tar
        #[arg(long, env = "INGOT_VERIFY_PROXMOX", value_parser = clap::builder::FalseyValueParser::new())]
        proxmox: bool,
        /// The Debian architecture /bin/sh must be built for (default: an OCI archive's, else
        /// this host's).
        #[arg(long)]
        arch: Option<String>,
        /// Check the provenance beside the tarball too (a missing one is a failure).
        #[arg(long, requires = "key")]
        provenance: bool,
        /// The Ed25519 public key (SPKI PEM) the provenance must be signed with.
        #[arg(long, requires = "provenance")]
        key: Option<PathBuf>,
    },
    /// Rebuild a published image from its recipe and lock, and compare the bytes.
    ///
    /// Reads the provenance (or manifest) beside TARBALL, refuses a recipe folder whose files
    /// differ from the recorded ones, builds --locked into a private temporary directory
    /// (nothing is published) and exits 0 with "identical", or 1 with the first differing
    /// tar entries. Example: ingot rebuild out/img-v1.tar.gz --recipe recipes/ubuntu-24.04
    /// --mirror file:///srv/ingot-mirror
    Rebuild(RebuildArgs),
    /// Manage provenance signing keys.
    ///
    /// Example: ingot key generate --out ~/.config/ingot/signing.pem
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Upload an image to Proxmox storage as a container template, through the API with a token.
    ///
    /// The secret comes from PM_API_TOKEN_SECRET or --token-secret-file, never from a flag.
    ///
    /// Example: PM_API_URL=https://pve1:8006/api2/json PM_API_TOKEN_ID='ingot@pve!upload'
    /// PM_API_TOKEN_SECRET=… PM_NODE=pve1 PM_STORAGE=local ingot upload
    /// out/ubuntu-24.04-lxc-rootfs-v3.tar.gz --ca-file pve-root-ca.pem
    ///
    /// By reference, the node fetching it itself: ingot upload --from-url
    /// https://store.example/ubuntu-24.04-lxc-rootfs-v3.tar.gz [TARBALL], or ingot upload
    /// --from-registry registry.example.com/golden/ubuntu:v3.
    Upload(UploadArgs),
    /// Push an OCI archive (`build --oci`) to a registry over the OCI distribution API; a
    /// tag that names another manifest is never overwritten. Credentials:
    /// INGOT_REGISTRY_USERNAME/INGOT_REGISTRY_PASSWORD, else a Docker config.json.
    ///
    /// Example: ingot push out/ubuntu-24.04-lxc-rootfs-v3.oci.tar registry.example.com/golden/ubuntu:v3
    Push {
        /// The OCI archive (`<image>-v<N>.oci.tar`).
        archive: PathBuf,
        /// HOST[:PORT]/NAME:TAG.
        reference: String,
        /// Trust the registry's certificate only if it chains to a CA in this PEM file.
        #[arg(long, env = "INGOT_REGISTRY_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that this host can build rootless, and say how to fix what is missing.
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the recipes found by name, and where: ./recipes/, then
    /// $XDG_CONFIG_HOME/ingot/recipes/, then /usr/share/ingot/recipes/.
    ///
    /// Example: ingot recipes --json
    Recipes {
        /// Print JSON (the search path and each recipe).
        #[arg(long)]
        json: bool,
    },
    /// Write a new recipe folder of your own from an existing recipe, and say what to edit.
    ///
    /// Example: ingot new my-image --from ubuntu-24.04 && ingot build my-image
    New {
        /// The new recipe's name (also its image name).
        name: String,
        /// The recipe to start from: a name (see `ingot recipes`) or a path.
        #[arg(long, default_value = "ubuntu-24.04")]
        from: PathBuf,
        /// The folder to write [default: recipes/NAME]; refused if it exists.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Internal: the namespaced build child.
    #[command(name = "__stage", hide = true)]
    Stage { spec: PathBuf },
    /// Internal (packaging): write the man pages and shell completions into DIR.
    #[command(name = "__generate-assets", hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Args)]
struct UploadArgs {
    /// The image tarball (.tar.gz, .tar.zst, .tar.xz, .tar); with --from-url, the same file
    /// on local disk (its SHA-256 is the checksum, and it is verified first).
    #[arg(required_unless_present_any = ["from_url", "from_registry"])]
    tarball: Option<PathBuf>,
    /// Ask each node to download the template from this http(s) URL itself (download-url),
    /// checked by the SHA-256 of TARBALL or else of URL.sha256.
    #[arg(long, value_name = "URL", conflicts_with = "from_registry")]
    from_url: Option<String>,
    /// Ask each node to pull this tagged OCI image (HOST[:PORT]/NAME:TAG) from its registry
    /// (oci-registry-pull; the registry must be readable without login).
    #[arg(long, value_name = "REF", conflicts_with_all = ["tarball", "require_signature", "no_verify"])]
    from_registry: Option<String>,
    /// With --from-url: the node does not check the URL's TLS certificate (warns; the SHA-256
    /// is still checked).
    #[arg(long, requires = "from_url")]
    no_verify_certificates: bool,
    /// With --from-registry: check the registry's certificate against this CA (PEM) when
    /// ingot first asks it for the tag (the node uses its own trust store).
    #[arg(long, env = "INGOT_REGISTRY_CA_FILE")]
    registry_ca_file: Option<PathBuf>,
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
    /// Refuse, before any request, an image whose provenance is not signed by this Ed25519
    /// public key (SPKI PEM) or does not match it (as `ingot verify --provenance --key`).
    #[arg(long, env = "PM_REQUIRE_SIGNATURE")]
    require_signature: Option<PathBuf>,
}

#[derive(Args)]
struct RebuildArgs {
    /// The published image tarball to rebuild.
    tarball: PathBuf,
    /// The recipe folder (with its ingot.lock) the image was built from.
    #[arg(long)]
    recipe: PathBuf,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KeyAction {
    /// Write a new Ed25519 key pair: FILE (PKCS#8 PEM, mode 0600) and FILE.pub (SPKI PEM).
    Generate {
        /// The private key's file (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
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
    common_options(&s.recipe, &s.archive, quiet)
}

fn common_options(recipe: &std::path::Path, s: &ArchiveArgs, quiet: bool) -> CommonOptions {
    CommonOptions {
        recipe: recipe.to_path_buf(),
        mirror: s.mirror.clone(),
        allow_expired: s.allow_expired,
        allow_older: s.allow_older,
        cache_dir: s.cache_dir.clone(),
        jobs: s.jobs,
        quiet,
        ca_file: s.ca_file.clone(),
        suite_mirrors: s.suite_mirrors.clone(),
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
            oci,
            sign_key,
            network_stack,
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
                oci,
                sign_key,
                network_stack,
            },
            verbose,
        ),
        Command::Verify {
            tarball,
            json,
            proxmox,
            arch,
            provenance,
            key,
        } => match key.filter(|_| provenance) {
            Some(key) => cli::provenance::verify(&tarball, &key, json),
            None => cli::verify(
                &tarball,
                json,
                &ingot::verify::VerifyOptions {
                    proxmox,
                    architecture: arch,
                },
            ),
        },
        Command::Push {
            archive,
            reference,
            ca_file,
            json,
        } => cli::push::push(&archive, &reference, ca_file.as_deref(), json),
        Command::Rebuild(a) => cli::provenance::rebuild(
            &common_options(&a.recipe, &a.archive, quiet),
            &a.tarball,
            a.json,
            verbose,
        ),
        Command::Key {
            action: KeyAction::Generate { out },
        } => cli::provenance::key_generate(&out),
        Command::Doctor { json } => cli::doctor(json),
        Command::Recipes { json } => cli::recipes::list(json),
        Command::New {
            name,
            from,
            dir,
            json,
        } => cli::recipes::new(&name, &from, dir, json),
        Command::GenerateAssets { dir } => {
            cli::assets::generate(<Cli as clap::CommandFactory>::command(), &dir)
        }
        Command::Upload(a) => cli::upload::upload(
            &ingot::upload::UploadCommand {
                tarball: a.tarball,
                from_url: a.from_url,
                from_registry: a.from_registry,
                no_verify_certificates: a.no_verify_certificates,
                registry_ca_file: a.registry_ca_file,
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
                require_signature: a.require_signature,
            },
            verbose,
        ),
        Command::Lock { source, check } => cli::lock(&common(&source, quiet), check, verbose),
        Command::Mirror { source, to } => cli::mirror(&common(&source, quiet), &to, verbose),
        Command::Outdated { source, out, json } => {
            cli::outdated(&common(&source, quiet), &out, json, verbose)
        }
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
            eprintln!("ingot: error: {}", ingot::progress::one_line(&e));
            cli::exit::exit(&e)
        }
    }
}
