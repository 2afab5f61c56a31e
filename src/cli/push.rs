//! `ingot push`: the binary's side (the library is [`ingot::push`]): credentials from the
//! environment or a Docker `config.json`, the result on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ingot::push::{Credentials, PushError, Reference};

use super::exit;

/// `INGOT_REGISTRY_USERNAME` + `INGOT_REGISTRY_PASSWORD`, else the Docker `config.json`
/// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
fn credentials(registry: &str) -> Result<Option<Credentials>, PushError> {
    let user = std::env::var("INGOT_REGISTRY_USERNAME").ok();
    let pass = std::env::var("INGOT_REGISTRY_PASSWORD").ok();
    if let (Some(username), Some(password)) = (user, pass) {
        return Ok(Some(Credentials { username, password }));
    }
    let config = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".docker/config.json"),
            None => return Ok(None),
        },
    };
    ingot::push::docker_config_credentials(&config, registry)
}

/// Run `ingot push ARCHIVE REF`.
pub fn push(
    archive: &Path,
    reference: &str,
    ca_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let result = reference.parse::<Reference>().and_then(|r| {
        let creds = credentials(&r.registry)?;
        ingot::push::push(archive, &r, creds.as_ref(), ca_file)
    });
    match result {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &done)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}@{}", done.reference, done.manifest_digest)?;
            }
            if done.already_tagged {
                eprintln!(
                    "ingot: {} already names this image: nothing sent",
                    done.reference
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let bad_input = e.is_bad_input();
            Ok(exit::report(e, bad_input))
        }
    }
}
