//! Real `.deb` files for fixtures, built with `dpkg-deb --root-owner-group --build`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into one binary package. Build it with [`DebSpec::build`].
///
/// Relationship fields are written verbatim into `DEBIAN/control` (`"libc6 (>= 2.34) | musl"`);
/// `None` omits the field. Paths in `files`, `dirs` and `symlinks` are absolute inside the
/// package (`/usr/bin/hello`).
#[derive(Debug, Clone)]
pub struct DebSpec {
    /// `Package`.
    pub name: String,
    /// `Version` (may carry an epoch, `1:2.0-1`).
    pub version: String,
    /// `Architecture` (`amd64`, `all`).
    pub arch: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (`required`, `important`, `optional`, …).
    pub priority: Option<String>,
    /// `Multi-Arch`.
    pub multi_arch: Option<String>,
    /// `Pre-Depends`.
    pub pre_depends: Option<String>,
    /// `Depends`.
    pub depends: Option<String>,
    /// `Recommends`.
    pub recommends: Option<String>,
    /// `Provides`.
    pub provides: Option<String>,
    /// `Conflicts`.
    pub conflicts: Option<String>,
    /// `Breaks`.
    pub breaks: Option<String>,
    /// `Replaces`.
    pub replaces: Option<String>,
    /// `Source` (written only if set).
    pub source: Option<String>,
    /// Extra control fields, verbatim, in order.
    pub extra_fields: Vec<(String, String)>,
    /// Regular files: (absolute path, contents, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Empty directories to ship (mode 0755).
    pub dirs: Vec<String>,
    /// Symlinks: (absolute path, target as written).
    pub symlinks: Vec<(String, String)>,
    /// Absolute paths listed in `DEBIAN/conffiles`.
    pub conffiles: Vec<String>,
    /// Maintainer scripts: (`preinst`/`postinst`/`prerm`/`postrm`/`config`, text); mode 0755.
    pub scripts: Vec<(String, String)>,
    /// `dpkg-deb -Z` compressor: `xz` (Debian's default), `zstd` (Ubuntu's), `gzip`, `none`.
    pub compression: String,
}

impl DebSpec {
    /// A minimal `Architecture: amd64`, `Priority: optional` package with no files.
    pub fn new(name: &str, version: &str) -> DebSpec {
        DebSpec {
            name: name.to_string(),
            version: version.to_string(),
            arch: "amd64".to_string(),
            essential: false,
            priority: Some("optional".to_string()),
            multi_arch: None,
            pre_depends: None,
            depends: None,
            recommends: None,
            provides: None,
            conflicts: None,
            breaks: None,
            replaces: None,
            source: None,
            extra_fields: Vec::new(),
            files: Vec::new(),
            dirs: Vec::new(),
            symlinks: Vec::new(),
            conffiles: Vec::new(),
            scripts: Vec::new(),
            compression: "xz".to_string(),
        }
    }

    /// Set `Architecture`.
    pub fn arch(mut self, arch: &str) -> Self {
        self.arch = arch.to_string();
        self
    }

    /// Mark `Essential: yes` (and `Priority: required`, as Essential packages are).
    pub fn essential(mut self) -> Self {
        self.essential = true;
        self.priority = Some("required".to_string());
        self
    }

    /// Set `Priority`.
    pub fn priority(mut self, priority: &str) -> Self {
        self.priority = Some(priority.to_string());
        self
    }

    /// Set `Depends`.
    pub fn depends(mut self, v: &str) -> Self {
        self.depends = Some(v.to_string());
        self
    }

    /// Set `Pre-Depends`.
    pub fn pre_depends(mut self, v: &str) -> Self {
        self.pre_depends = Some(v.to_string());
        self
    }

    /// Set `Provides`.
    pub fn provides(mut self, v: &str) -> Self {
        self.provides = Some(v.to_string());
        self
    }

    /// Set `Conflicts`.
    pub fn conflicts(mut self, v: &str) -> Self {
        self.conflicts = Some(v.to_string());
        self
    }

    /// Set `Breaks`.
    pub fn breaks(mut self, v: &str) -> Self {
        self.breaks = Some(v.to_string());
        self
    }

    /// Add a regular file.
    pub fn file(mut self, path: &str, contents: &[u8], mode: u32) -> Self {
        self.files.push((path.to_string(), contents.to_vec(), mode));
        self
    }

    /// Add an empty directory.
    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.to_string());
        self
    }

    /// Add a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.push((path.to_string(), target.to_string()));
        self
    }

    /// Add a regular file and list it as a conffile.
    pub fn conffile(mut self, path: &str, contents: &[u8]) -> Self {
        self.conffiles.push(path.to_string());
        self.file(path, contents, 0o644)
    }

    /// Add a maintainer script (`postinst`, …).
    pub fn script(mut self, name: &str, text: &str) -> Self {
        self.scripts.push((name.to_string(), text.to_string()));
        self
    }

    /// Set the `dpkg-deb -Z` compressor.
    pub fn compression(mut self, compressor: &str) -> Self {
        self.compression = compressor.to_string();
        self
    }

    /// The `DEBIAN/control` text.
    pub fn control(&self) -> String {
        let mut c = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: ingot fixtures <fixture@ingot.invalid>\n",
            self.name, self.version, self.arch
        );
        let mut field = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                c.push_str(&format!("{name}: {v}\n"));
            }
        };
        field("Source", &self.source);
        if self.essential {
            field("Essential", &Some("yes".to_string()));
        }
        field("Priority", &self.priority);
        field("Multi-Arch", &self.multi_arch);
        field("Pre-Depends", &self.pre_depends);
        field("Depends", &self.depends);
        field("Recommends", &self.recommends);
        field("Provides", &self.provides);
        field("Conflicts", &self.conflicts);
        field("Breaks", &self.breaks);
        field("Replaces", &self.replaces);
        for (k, v) in &self.extra_fields {
            c.push_str(&format!("{k}: {v}\n"));
        }
        c.push_str(&format!(
            "Description: fixture package {}\n built by ingot's test support\n",
            self.name
        ));
        c
    }

    /// Build `<out_dir>/<name>_<version without epoch>_<arch>.deb` and return its path.
    pub fn build(&self, out_dir: &Path) -> PathBuf {
        std::fs::create_dir_all(out_dir).expect("create .deb output directory");
        let tree = tempfile::tempdir().expect("temporary package tree");
        let root = tree.path();
        let debian = root.join("DEBIAN");
        std::fs::create_dir_all(&debian).expect("create DEBIAN/");
        std::fs::write(debian.join("control"), self.control()).expect("write control");
        if !self.conffiles.is_empty() {
            std::fs::write(debian.join("conffiles"), self.conffiles.join("\n") + "\n")
                .expect("write conffiles");
        }
        for (name, text) in &self.scripts {
            write_mode(&debian.join(name), text.as_bytes(), 0o755);
        }
        for dir in &self.dirs {
            std::fs::create_dir_all(inside(root, dir)).expect("create package directory");
        }
        for (path, contents, mode) in &self.files {
            write_mode(&inside(root, path), contents, *mode);
        }
        for (path, target) in &self.symlinks {
            let link = inside(root, path);
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).expect("create symlink parent");
            }
            std::os::unix::fs::symlink(target, &link).expect("create symlink");
        }
        // dpkg-deb refuses group/other-writable DEBIAN and takes directory modes as found.
        set_dir_modes(root);
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        let out = out_dir.join(format!("{}_{}_{}.deb", self.name, version, self.arch));
        let output = Command::new("dpkg-deb")
            .arg("--root-owner-group")
            .arg(format!("-Z{}", self.compression))
            .arg("--build")
            .arg(root)
            .arg(&out)
            .output()
            .expect("run dpkg-deb (is dpkg installed?)");
        assert!(
            output.status.success(),
            "dpkg-deb --build {} failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }
}

fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent directory");
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn set_dir_modes(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for entry in std::fs::read_dir(dir).expect("read package tree") {
        let entry = entry.expect("read package tree entry");
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            set_dir_modes(&entry.path());
        }
    }
}
