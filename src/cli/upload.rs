//! `ingot upload`: the binary's side (the library is [`ingot::upload`]).

use std::io::Write;
use std::process::ExitCode;

use ingot::upload::config::Trust;
use ingot::upload::remote::{DownloadRequest, PullRequest};
use ingot::upload::{UploadCommand, UploadError, UploadRequest};

use super::exit;

/// Run `ingot upload` (bytes, `--from-url` or `--from-registry`): the result on stdout (the
/// volid, or JSON), progress on stderr.
pub fn upload(cmd: &UploadCommand, verbose: bool) -> anyhow::Result<ExitCode> {
    let reporter = super::render::reporter(cmd.quiet, verbose);
    let result = cmd.settings().and_then(|settings| {
        if settings.trust == Trust::Insecure {
            eprintln!(
                "ingot: warning: --insecure: the server's certificate is not checked; anyone \
                 on the path can read the token"
            );
        }
        if let Some(url) = &cmd.from_url {
            if cmd.no_verify_certificates {
                eprintln!(
                    "ingot: warning: --no-verify-certificates: the node does not check {url}'s \
                     certificate (the SHA-256 is still checked)"
                );
            }
            ingot::upload::remote::download_url(
                &DownloadRequest {
                    url: url.clone(),
                    image: cmd.tarball.clone(),
                    no_verify: cmd.no_verify,
                    require_signature: cmd.require_signature.clone(),
                    verify_certificates: !cmd.no_verify_certificates,
                    settings,
                },
                reporter.as_ref(),
            )
        } else if let Some(reference) = &cmd.from_registry {
            ingot::upload::remote::registry_pull(
                &PullRequest {
                    reference: reference.clone(),
                    registry_ca_file: cmd.registry_ca_file.clone(),
                    settings,
                },
                reporter.as_ref(),
            )
        } else {
            let tarball = cmd.tarball.clone().ok_or_else(|| UploadError::Config {
                message: "no image given: ingot upload TARBALL, --from-url URL or \
                          --from-registry REF"
                    .into(),
            })?;
            ingot::upload::upload(
                &UploadRequest {
                    tarball,
                    no_verify: cmd.no_verify,
                    require_signature: cmd.require_signature.clone(),
                    settings,
                },
                reporter.as_ref(),
            )
        }
    });
    match result {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            if cmd.json {
                serde_json::to_writer(&mut out, &done)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", done.volid)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let failed = match &e {
                UploadError::Partial { source, .. } => source.as_ref(),
                other => other,
            };
            if let UploadError::TaskFailed { log_tail, upid, .. } = failed {
                eprintln!("ingot: task log of {upid} (last lines):");
                for line in log_tail {
                    eprintln!("  {}", ingot::progress::escape_controls(line));
                }
            }
            let bad_input = e.is_bad_input();
            Ok(exit::report(e, bad_input))
        }
    }
}
