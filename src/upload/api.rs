//! The Proxmox VE API calls an upload needs, as typed functions: the storage's `shared` flag,
//! template list, the multipart upload, the calls that start a fetch on the node
//! (`download-url`, `oci-registry-pull`), task status and task log — with the retry policy in
//! one place ([`UploadError::should_retry`]).
//!
//! Retries: an idempotent `GET` is repeated on a connection failure or a 5xx. The upload is
//! repeated only while the server has not accepted it (no UPID yet), and before each repeat the
//! template list is read again: if the name has appeared, an earlier attempt did land and we
//! stop rather than upload twice. Once a UPID is returned the upload is never sent again, even
//! if the task then fails.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::UploadError;
use super::http::{Client, Response};
use super::multipart::TemplateForm;

/// A template already on a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `<storage>:vztmpl/<file>`.
    pub volid: String,
    /// Size in bytes (0 when the server did not say).
    pub size: u64,
}

/// The end of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    /// `OK`, `WARNINGS: n`, or the error text.
    pub exitstatus: String,
}

impl TaskEnd {
    /// `OK` and `WARNINGS: n` are success.
    pub fn ok(&self) -> bool {
        self.exitstatus == "OK" || self.exitstatus.starts_with("WARNINGS")
    }
}

/// Typed Proxmox API calls over one [`Client`], with retries.
pub struct Api {
    client: Client,
    retries: u32,
    backoff: Duration,
}

impl Api {
    /// Wrap `client`; transient failures are retried `retries` times, waiting `backoff`,
    /// then twice as long each time.
    pub fn new(client: Client, retries: u32, backoff: Duration) -> Self {
        Api {
            client,
            retries,
            backoff,
        }
    }

    /// Whether the storage is shared between nodes: `GET /storage/{storage}`, which needs
    /// `Datastore.Allocate`; a least-privilege token gets 403 there, and then the storage index
    /// `GET /storage` (filtered by `Datastore.Audit`) says the same.
    pub fn storage_is_shared(&self, storage: &str) -> Result<bool, UploadError> {
        let config = match self.get_data(&format!("/storage/{storage}")) {
            Err(UploadError::Http { status: 403, .. }) => {
                let index = self.get_data("/storage")?;
                let entry = index.as_array().and_then(|all| {
                    all.iter()
                        .find(|e| e.get("storage").and_then(Value::as_str) == Some(storage))
                });
                match entry {
                    Some(e) => e.clone(),
                    None => {
                        return Err(UploadError::Http {
                            url: self.client.url_of("/storage"),
                            status: 404,
                            reason: format!(
                                "storage {storage} is not in the list this token may see"
                            ),
                        });
                    }
                }
            }
            other => other?,
        };
        Ok(match config.get("shared") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::String(s)) => s == "1",
            _ => false,
        })
    }

    /// `GET /nodes/{node}/storage/{storage}/content?content=vztmpl`.
    pub fn templates(&self, node: &str, storage: &str) -> Result<Vec<Template>, UploadError> {
        let path = format!("/nodes/{node}/storage/{storage}/content?content=vztmpl");
        let data = self.get_data(&path)?;
        let items = data.as_array().ok_or_else(|| UploadError::Protocol {
            url: self.client.url_of(&path),
            message: "expected data to be a list".into(),
        })?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some(Template {
                    volid: item.get("volid")?.as_str()?.to_string(),
                    size: item.get("size").and_then(Value::as_u64).unwrap_or(0),
                })
            })
            .collect())
    }

    /// `POST /nodes/{node}/storage/{storage}/upload` → the task's UPID. The file is read from
    /// its start on every attempt; `progress` hears each block sent (and `Restart` when an
    /// attempt is repeated).
    pub fn upload(
        &self,
        node: &str,
        storage: &str,
        payload: &mut Payload<'_>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<String, UploadError> {
        let Payload {
            form,
            file,
            path: file_path,
            volid,
        } = payload;
        let path = format!("/nodes/{node}/storage/{storage}/upload");
        let mut attempt = 0;
        loop {
            if attempt > 0 {
                // Did a failed attempt land after all? Then never send it again.
                if self
                    .templates(node, storage)?
                    .iter()
                    .any(|t| t.volid == *volid)
                {
                    return Err(UploadError::Appeared {
                        volid: volid.to_string(),
                        node: node.to_string(),
                    });
                }
                progress(Progress::Restart);
            }
            let result = file
                .seek(SeekFrom::Start(0))
                .map_err(|e| UploadError::Tarball {
                    path: file_path.to_path_buf(),
                    message: e.to_string(),
                })
                .and_then(|_| {
                    self.client.post(
                        &path,
                        &form.content_type(),
                        form.content_length(),
                        &mut |out| form.write(file, out, &mut |n| progress(Progress::Sent(n))),
                    )
                })
                .and_then(|r| self.data(&path, r));
            match result {
                Ok(data) => {
                    return match data.as_str() {
                        Some(upid) if upid.starts_with("UPID:") => Ok(upid.to_string()),
                        _ => Err(UploadError::Protocol {
                            url: self.client.url_of(&path),
                            message: format!("expected a task id (UPID:…), got {data}"),
                        }),
                    };
                }
                Err(e) if e.should_retry() && attempt < self.retries => {
                    progress(Progress::Retry(e.to_string()));
                    std::thread::sleep(self.backoff * 2u32.pow(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `POST {path}` with `params` form-encoded (as the Proxmox API takes them), for a call
    /// that starts a task (`download-url`, `oci-registry-pull`) → the task's UPID. Repeated
    /// only when no connection was made (nothing was sent): once the request may have reached
    /// the node, a repeat could start a second task.
    pub fn start_task(&self, path: &str, params: &[(&str, &str)]) -> Result<String, UploadError> {
        let body = form_urlencode(params);
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .post(
                    path,
                    "application/x-www-form-urlencoded",
                    body.len() as u64,
                    &mut |out| out.write_all(body.as_bytes()),
                )
                .and_then(|r| self.data(path, r));
            match result {
                Ok(data) => {
                    return match data.as_str() {
                        Some(upid) if upid.starts_with("UPID:") => Ok(upid.to_string()),
                        _ => Err(UploadError::Protocol {
                            url: self.client.url_of(path),
                            message: format!("expected a task id (UPID:…), got {data}"),
                        }),
                    };
                }
                Err(UploadError::Connect { .. }) if attempt < self.retries => {
                    std::thread::sleep(self.backoff * 2u32.pow(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`: `None` while running.
    pub fn task_end(&self, node: &str, upid: &str) -> Result<Option<TaskEnd>, UploadError> {
        let path = format!("/nodes/{node}/tasks/{}/status", path_escape(upid));
        let data = self.get_data(&path)?;
        match data.get("status").and_then(Value::as_str) {
            Some("stopped") => Ok(Some(TaskEnd {
                exitstatus: data
                    .get("exitstatus")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error (no exitstatus)")
                    .to_string(),
            })),
            Some(_) => Ok(None),
            None => Err(UploadError::Protocol {
                url: self.client.url_of(&path),
                message: format!("no task status in {data}"),
            }),
        }
    }

    /// The last `lines` lines of `GET /nodes/{node}/tasks/{upid}/log`.
    pub fn task_log_tail(
        &self,
        node: &str,
        upid: &str,
        lines: usize,
    ) -> Result<Vec<String>, UploadError> {
        let path = format!(
            "/nodes/{node}/tasks/{}/log?start=0&limit=100000",
            path_escape(upid)
        );
        let data = self.get_data(&path)?;
        let all: Vec<String> = data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("t").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(all[all.len().saturating_sub(lines)..].to_vec())
    }

    fn get_data(&self, path: &str) -> Result<Value, UploadError> {
        let mut attempt = 0;
        loop {
            match self.client.get(path).and_then(|r| self.data(path, r)) {
                Err(e) if e.should_retry() && attempt < self.retries => {
                    std::thread::sleep(self.backoff * 2u32.pow(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The `data` member of a successful answer, or the error the status means.
    fn data(&self, path: &str, r: Response) -> Result<Value, UploadError> {
        let url = self.client.url_of(path);
        if !(200..300).contains(&r.status) {
            let detail = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
                v.get("errors")
                    .filter(|e| !e.is_null())
                    .map(|e| e.to_string())
            });
            return Err(UploadError::Http {
                url,
                status: r.status,
                reason: match detail {
                    Some(d) => format!("{} {d}", r.reason),
                    None => r.reason,
                },
            });
        }
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| UploadError::Protocol {
            url: url.clone(),
            message: format!("response is not JSON: {e}"),
        })?;
        match v {
            Value::Object(mut o) => Ok(o.remove("data").unwrap_or(Value::Null)),
            _ => Err(UploadError::Protocol {
                url,
                message: "response is not a JSON object".into(),
            }),
        }
    }
}

/// What is sent: the multipart framing, the open file it streams, and the names for messages.
pub struct Payload<'a> {
    /// The body's framing.
    pub form: &'a TemplateForm,
    /// The tarball, open.
    pub file: &'a mut File,
    /// Its path, for errors.
    pub path: &'a Path,
    /// The volume id it will get, `<storage>:vztmpl/<name>`.
    pub volid: &'a str,
}

/// What an upload attempt reports while it runs.
pub enum Progress {
    /// This many more file bytes went out.
    Sent(u64),
    /// The attempt failed with this error and will be repeated.
    Retry(String),
    /// A repeated attempt starts from byte 0.
    Restart,
}

/// `application/x-www-form-urlencoded`: every byte but the unreserved ones as `%XX`.
fn form_urlencode(params: &[(&str, &str)]) -> String {
    let encode = |s: &str| crate::net::percent_encode(s, b"");
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encode a path segment (UPIDs hold `:`, `@`, `!`, which may stay).
fn path_escape(s: &str) -> String {
    crate::net::percent_encode(s, b":@!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upids_survive_path_escaping() {
        let upid = "UPID:pve1:000A1B2C:01234567:65A0B1C2:imgcopy::ingot@pve!upload:";
        assert_eq!(path_escape(upid), upid);
        assert_eq!(path_escape("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form_urlencode(&[("url", "https://h/a b?x=1&y"), ("content", "vztmpl")]),
            "url=https%3A%2F%2Fh%2Fa%20b%3Fx%3D1%26y&content=vztmpl"
        );
    }

    #[test]
    fn warnings_are_success() {
        for (s, ok) in [
            ("OK", true),
            ("WARNINGS: 2", true),
            ("command failed", false),
        ] {
            assert_eq!(
                TaskEnd {
                    exitstatus: s.into()
                }
                .ok(),
                ok
            );
        }
    }
}
