//! A seed tree for stage tests that need a shell but no packages: the host's static busybox
//! (`apt-get install busybox-static`) as `/bin/busybox`, with applet links.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Create `dir/seed` with `bin`, `etc`, `tmp` (1777), `srv`, `run`, busybox and a link per
/// applet in `bin/`; returns the seed path.
pub fn seed(dir: &Path, applets: &[&str]) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "these tests need a static busybox: apt-get install busybox-static"
    );
    let seed = dir.join("seed");
    for d in ["bin", "etc", "tmp", "srv", "run"] {
        std::fs::create_dir_all(seed.join(d)).unwrap();
    }
    std::fs::set_permissions(seed.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(busybox, seed.join("bin/busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", seed.join("bin").join(applet)).unwrap();
    }
    seed
}
