//! Templates by reference: the node fetches them itself. `--from-url` asks each target node
//! to `POST …/storage/{storage}/download-url` (the node downloads the URL and checks the
//! SHA-256 ingot gives it); `--from-registry` asks it to `POST …/oci-registry-pull` a tagged
//! OCI image reference (the node runs `skopeo copy`). Both list first and refuse an existing
//! name before any `POST`, and poll the task to its end, exactly as an upload of bytes does
//! (the shared steps are [`super::check_image`], [`super::targets_without`] and
//! [`super::wait_task`]).
//!
//! The SHA-256 for `download-url` comes from the local image when one is given (checked as
//! for an upload: sidecar, provenance, `verify --proxmox`), else from `URL.sha256` (the
//! sidecar every build publishes beside the tarball), which must name the URL's file.
//!
//! Owns: building these two requests. Must never: send a `POST` before the list showed the
//! name free on every target node, or report success for a task that did not end `OK`.

use std::path::PathBuf;

use super::config::Settings;
use super::{TaskResult, UploadError, Uploaded};
use crate::progress::Reporter;

/// `ingot upload --from-url URL [TARBALL]`.
#[derive(Debug)]
pub struct DownloadRequest {
    /// `http(s)://…/<template name>`.
    pub url: String,
    /// The same image on local disk: its SHA-256 is the checksum, and it is verified first.
    pub image: Option<PathBuf>,
    /// Skip `verify` of the local image (its checksum is still checked).
    pub no_verify: bool,
    /// Require provenance signed by this public key beside the local image.
    pub require_signature: Option<PathBuf>,
    /// Whether the node checks the URL's TLS certificate (`verify-certificates`).
    pub verify_certificates: bool,
    /// The Proxmox side.
    pub settings: Settings,
}

/// `ingot upload --from-registry REF`.
#[derive(Debug)]
pub struct PullRequest {
    /// `[HOST[:PORT]/]NAME:TAG`.
    pub reference: String,
    /// The CA file the registry's certificate is checked against (else the built-in roots)
    /// when ingot first asks the registry for the tag.
    pub registry_ca_file: Option<PathBuf>,
    /// The Proxmox side.
    pub settings: Settings,
}

/// Ask every target node to download `req.url` as a template, with its SHA-256.
pub fn download_url(
    req: &DownloadRequest,
    progress: &dyn Reporter,
) -> Result<Uploaded, UploadError> {
    let s = &req.settings;
    let name = url_template_name(&req.url)?;
    let (sha256, size) = match &req.image {
        Some(path) => {
            let image = super::check_image(
                path,
                req.no_verify,
                req.require_signature.as_deref(),
                progress,
            )?;
            if image.name != name {
                return Err(UploadError::Url {
                    url: req.url.clone(),
                    message: format!(
                        "ends in {name}, but the local image is {}: give the URL of that file",
                        image.name
                    ),
                });
            }
            (image.sha256, Some(image.size))
        }
        None if req.require_signature.is_some() => {
            // The provenance is checked against local bytes; without them nothing would be.
            return Err(UploadError::Config {
                message: "--require-signature with --from-url needs the image on local disk \
                          too (ingot upload --from-url URL TARBALL): its provenance is checked \
                          against those bytes"
                    .into(),
            });
        }
        None => (sha256_beside(&req.url, &name, progress)?, None),
    };
    let api = super::connect(s)?;
    let volid = format!("{}:vztmpl/{name}", s.storage);
    let (shared, targets) = super::targets_without(&api, s, &volid)?;
    // The parameters as pve-storage's `download_url` method names them
    // (src/PVE/API2/Storage/Status.pm): `checksum` requires `checksum-algorithm`, and
    // `verify-certificates` defaults to 1 there too; it is always sent, so the request says
    // what it asks for.
    let params = [
        ("content", "vztmpl"),
        ("filename", name.as_str()),
        ("url", req.url.as_str()),
        ("checksum", sha256.as_str()),
        ("checksum-algorithm", "sha256"),
        (
            "verify-certificates",
            if req.verify_certificates { "1" } else { "0" },
        ),
    ];
    let mut tasks: Vec<TaskResult> = Vec::new();
    for node in &targets {
        let path = format!("/nodes/{node}/storage/{}/download-url", s.storage);
        let task = start_and_wait(&api, node, &path, &params, s, &volid, progress)
            .map_err(|e| super::after(&tasks, e))?;
        tasks.push(task);
    }
    Ok(Uploaded {
        volid,
        size,
        sha256: Some(sha256),
        source: Some(req.url.clone()),
        storage: s.storage.clone(),
        shared,
        nodes: targets,
        tasks,
    })
}

/// Ask every target node to pull the tagged OCI image `req.reference` from its registry.
pub fn registry_pull(req: &PullRequest, progress: &dyn Reporter) -> Result<Uploaded, UploadError> {
    let s = &req.settings;
    let name = pull_template_name(&req.reference)?;
    check_tag(req, progress)?;
    let api = super::connect(s)?;
    let volid = format!("{}:vztmpl/{name}", s.storage);
    let (shared, targets) = super::targets_without(&api, s, &volid)?;
    // pve-storage's `oci_registry_pull` (src/PVE/API2/Storage/Status.pm) takes `reference`
    // and an optional `filename` (newer releases only); without it the file is named after
    // the reference, which is what `pull_template_name` computes. Not sending `filename`
    // keeps the request valid for every Proxmox VE 9.1.
    let params = [("reference", req.reference.as_str())];
    let mut tasks: Vec<TaskResult> = Vec::new();
    for node in &targets {
        let path = format!("/nodes/{node}/storage/{}/oci-registry-pull", s.storage);
        let task = start_and_wait(&api, node, &path, &params, s, &volid, progress)
            .map_err(|e| super::after(&tasks, e))?;
        tasks.push(task);
    }
    Ok(Uploaded {
        volid,
        size: None,
        sha256: None,
        source: Some(req.reference.clone()),
        storage: s.storage.clone(),
        shared,
        nodes: targets,
        tasks,
    })
}

/// Ask the registry for the tag as the node will (`skopeo copy` sends no credentials): a
/// missing tag or a registry that wants a login is refused before Proxmox is asked; a
/// registry this host cannot reach or does not trust (the node may) only warns. A reference
/// without a registry host is not checked (the node's `registries.conf` decides where it
/// goes).
fn check_tag(req: &PullRequest, progress: &dyn Reporter) -> Result<(), UploadError> {
    use crate::push::{PushError, Reference};
    let Ok(reference) = req.reference.parse::<Reference>() else {
        progress.message(&format!(
            "{}: no registry host, not checked from here",
            req.reference
        ));
        return Ok(());
    };
    progress.begin("registry", None);
    let refused = |message: String| UploadError::Registry {
        reference: req.reference.clone(),
        message,
    };
    match crate::push::anonymous_tag_digest(&reference, req.registry_ca_file.as_deref()) {
        Ok(Some(digest)) => {
            progress.finish(&format!("{} names manifest {digest}", req.reference));
            Ok(())
        }
        Ok(None) => Err(refused(
            "the registry has no such tag (push it first: ingot push ARCHIVE REF)".into(),
        )),
        Err(PushError::Unauthorized { detail, .. }) => Err(refused(format!(
            "the registry refuses an anonymous pull ({detail}), and Proxmox's \
             oci-registry-pull sends no credentials: make the repository readable without login"
        ))),
        Err(PushError::CaFile(e)) => Err(UploadError::Config {
            message: e.to_string(),
        }),
        Err(other) => {
            progress.finish(&format!(
                "could not check the tag from here ({other}); asking Proxmox anyway"
            ));
            Ok(())
        }
    }
}

fn start_and_wait(
    api: &super::api::Api,
    node: &str,
    path: &str,
    params: &[(&str, &str)],
    s: &Settings,
    volid: &str,
    progress: &dyn Reporter,
) -> Result<TaskResult, UploadError> {
    progress.begin(&format!("request {node}"), None);
    let upid = api.start_task(path, params)?;
    progress.finish(&format!("accepted by {node} as task {upid}"));
    super::wait_task(api, node, upid, s, volid, progress)
}

/// The template name a `download-url` of `url` stores: the last path segment (without query
/// or fragment), which must be a template name as for an upload. Only `http(s)://` (as
/// Proxmox's `url` parameter requires), and no credentials (they would land in the node's
/// task log).
pub fn url_template_name(url: &str) -> Result<String, UploadError> {
    let bad = |message: String| UploadError::Url {
        url: without_credentials(url),
        message,
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("expected an http:// or https:// URL".into()))?;
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("a URL holds no spaces or control characters".into()));
    }
    let path_and_more = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let authority = &rest[..rest.len() - path_and_more.len()];
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL would be shown in the node's task log: serve the template \
             without them"
                .into(),
        ));
    }
    if authority.is_empty() {
        return Err(bad("no host".into()));
    }
    let path = path_and_more.split(['?', '#']).next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    if name.is_empty() {
        return Err(bad(
            "the URL names no file (expected …/<image>-v<N>.tar.gz)".into(),
        ));
    }
    super::check_template_name(name).map_err(|m| bad(format!("its file name {name:?}: {m}")))?;
    Ok(name.to_string())
}

/// `url` with any `user:password@` shown as `…@`, for messages.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}{}", &rest[end..]),
        None => url.to_string(),
    }
}

/// The SHA-256 from `URL.sha256` (query and fragment left off), which must name `name`.
fn sha256_beside(url: &str, name: &str, progress: &dyn Reporter) -> Result<String, UploadError> {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    let sidecar = format!("{base}.sha256");
    progress.begin("checksum", None);
    let bytes = crate::net::Transport::new()
        .get_bytes(&sidecar, 64 * 1024)
        .map_err(|e| match e {
            e if e.should_retry() => UploadError::Connect {
                url: sidecar.clone(),
                message: e.to_string(),
            },
            crate::net::TransportError::NotFound { .. } => UploadError::UrlSidecar {
                url: sidecar.clone(),
                message: "not found: without a local image the checksum comes from URL.sha256 \
                          (publish the build's .sha256 beside it, or give the local image: ingot upload --from-url URL TARBALL)"
                    .into(),
            },
            other => UploadError::UrlSidecar {
                url: sidecar.clone(),
                message: other.to_string(),
            },
        })?;
    let text = String::from_utf8_lossy(&bytes);
    let sha256 = super::sidecar_sha256(&text, name).map_err(|message| UploadError::UrlSidecar {
        url: sidecar.clone(),
        message,
    })?;
    progress.finish(&format!("{name}: sha256 {sha256} (from {sidecar})"));
    Ok(sha256)
}

/// The template name `oci-registry-pull` gives `reference` when no `filename` is sent:
/// pve-storage's `normalize_content_filename` (src/PVE/Storage.pm: everything up to the last
/// `/` dropped, every character but `[a-zA-Z0-9_.-]` made `_`) plus `.tar`, so
/// `registry.example.com:5000/golden/ubuntu:v3` becomes `ubuntu_v3.tar`. The reference must
/// match the API's pattern for `reference` (src/PVE/API2/Storage/Status.pm): an optional
/// `HOST[:PORT]/`, lowercase path components, and a tag — Proxmox pulls tags only, so a
/// digest (`@sha256:…`) or a missing tag is refused here, before any request.
pub fn pull_template_name(reference: &str) -> Result<String, UploadError> {
    let bad = |message: &str| UploadError::Reference {
        reference: reference.to_string(),
        message: message.to_string(),
    };
    if reference.contains('@') {
        return Err(bad(
            "a digest reference: Proxmox's oci-registry-pull takes tags only; give \
             [HOST[:PORT]/]NAME:TAG (ingot push prints the tag it pushed)",
        ));
    }
    let last = reference.rsplit('/').next().unwrap_or_default();
    let Some((_, tag)) = last.rsplit_once(':') else {
        return Err(bad(
            "no tag: Proxmox's oci-registry-pull takes tags only; give [HOST[:PORT]/]NAME:TAG, \
             e.g. registry.example.com:5000/golden/ubuntu:v3",
        ));
    };
    let repository = &reference[..reference.len() - tag.len() - 1];
    let tag_ok = tag.len() <= 128
        && tag.chars().next().is_some_and(is_word)
        && tag.chars().all(|c| is_word(c) || matches!(c, '.' | '-'));
    let components: Vec<&str> = repository.split('/').collect();
    let name_ok = match components.as_slice() {
        [] => false,
        [only] => is_name_component(only),
        [first, rest @ ..] => {
            (is_name_component(first) || is_registry_host(first))
                && rest.iter().all(|c| is_name_component(c))
        }
    };
    if !tag_ok || !name_ok {
        return Err(bad(
            "expected [HOST[:PORT]/]NAME:TAG with a lowercase repository name, as Proxmox's \
             oci-registry-pull accepts it (e.g. registry.example.com:5000/golden/ubuntu:v3)",
        ));
    }
    let normalized: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(format!("{normalized}.tar"))
}

/// Perl's `\w` in ASCII.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `[a-z\d]+(?:(?:[._]|__|[-]*)[a-z\d]+)*`.
fn is_name_component(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (mut run, mut separator) = (0usize, String::new());
    for c in s.chars() {
        if alnum(c) {
            if run == 0 && !separator.is_empty() {
                return false;
            }
            if !separator.is_empty() {
                let ok = matches!(separator.as_str(), "." | "_" | "__")
                    || separator.chars().all(|c| c == '-');
                if !ok {
                    return false;
                }
                separator.clear();
            }
            run += 1;
        } else if matches!(c, '.' | '_' | '-') && run > 0 {
            separator.push(c);
        } else {
            return false;
        }
    }
    run > 0 && separator.is_empty()
}

/// DNS labels `[a-zA-Z\d]([a-zA-Z\d-]*[a-zA-Z\d])?` joined by `.`, then an optional `:PORT`.
fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_names_follow_proxmox() {
        for (reference, name) in [
            (
                "registry.example.com:5000/golden/ubuntu:v3",
                "ubuntu_v3.tar",
            ),
            ("127.0.0.1:5000/golden/mini:v1", "mini_v1.tar"),
            ("ubuntu:24.04", "ubuntu_24.04.tar"),
            ("Registry.Example/a__b/c--d:T_1", "c--d_T_1.tar"),
        ] {
            assert_eq!(pull_template_name(reference).unwrap(), name, "{reference}");
        }
        for bad in [
            "registry.example.com/golden/ubuntu@sha256:0123",
            "registry.example.com/golden/ubuntu",
            "registry.example.com:5000/golden/ubuntu",
            "registry.example.com/Golden/ubuntu:v3",
            "registry.example.com/golden/ubuntu:-v3",
            "registry.example.com/golden//ubuntu:v3",
            "-bad.example/golden/ubuntu:v3",
            "a_/b:v1",
        ] {
            assert!(pull_template_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_names() {
        assert_eq!(
            url_template_name("https://store.example/img/u-v3.tar.gz?sig=1").unwrap(),
            "u-v3.tar.gz"
        );
        assert_eq!(
            url_template_name("http://10.0.0.1:8080/u-v3.oci.tar").unwrap(),
            "u-v3.oci.tar"
        );
        for bad in [
            "ftp://store.example/u-v3.tar.gz",
            "https://store.example/",
            "https://store.example/u-v3.img",
            "https://user:pw@store.example/u-v3.tar.gz",
            "https://store.example/u v3.tar.gz",
            "https:///u-v3.tar.gz",
        ] {
            assert!(url_template_name(bad).is_err(), "{bad}");
        }
    }
}
