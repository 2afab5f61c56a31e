//! The `multipart/form-data` body of a Proxmox template upload, framed so that its exact
//! length is known before the first byte is sent (Proxmox refuses chunked uploads).
//!
//! Parts, in the order Proxmox reads them: `content` (`vztmpl`), `checksum-algorithm`
//! (`sha256`), `checksum`, then the file part `filename` with `filename="<name>"`. The
//! small parts form a preamble, the file streams from disk, and the closing boundary is the
//! epilogue: `Content-Length = preamble + file size + epilogue`. Nothing here buffers the file.

use std::io::{Read, Write};

/// One upload body: everything but the file's bytes, plus the file's size.
#[derive(Debug, Clone)]
pub struct TemplateForm {
    boundary: String,
    preamble: Vec<u8>,
    epilogue: Vec<u8>,
    file_size: u64,
}

impl TemplateForm {
    /// The form for a file `name` of `file_size` bytes with SHA-256 `sha256_hex`. `boundary`
    /// must not occur in the file; [`random_boundary`] makes one that will not.
    pub fn new(boundary: &str, name: &str, file_size: u64, sha256_hex: &str) -> TemplateForm {
        let mut preamble = String::new();
        for (field, value) in [
            ("content", "vztmpl"),
            ("checksum-algorithm", "sha256"),
            ("checksum", sha256_hex),
        ] {
            preamble.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
            ));
        }
        preamble.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; \
             filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ));
        TemplateForm {
            boundary: boundary.to_string(),
            preamble: preamble.into_bytes(),
            epilogue: format!("\r\n--{boundary}--\r\n").into_bytes(),
            file_size,
        }
    }

    /// The `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The size of the file part's content.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The exact body length.
    pub fn content_length(&self) -> u64 {
        self.preamble.len() as u64 + self.file_size + self.epilogue.len() as u64
    }

    /// Write the whole body: preamble, exactly `file_size` bytes of `file`, epilogue.
    /// `progress` is told how many file bytes went out after each block. A file that is
    /// shorter than announced is an error (the body would lie about its length).
    pub fn write(
        &self,
        file: &mut dyn Read,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> std::io::Result<()> {
        out.write_all(&self.preamble)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = self.file_size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the file shrank: {left} bytes missing"),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&buf[..n])?;
            left -= n as u64;
            progress(n as u64);
        }
        out.write_all(&self.epilogue)
    }
}

/// A boundary made of 128 random bits from the kernel (`/dev/urandom`), so it cannot be
/// predicted from, or collide by chance with, the file's contents.
pub fn random_boundary() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("ingot-{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_exact_and_parts_are_in_proxmox_order() {
        let data = b"tarball bytes".to_vec();
        let form = TemplateForm::new("XyZ", "img-v1.tar.gz", data.len() as u64, "ab12");
        let mut out = Vec::new();
        let mut seen = 0;
        form.write(&mut &data[..], &mut out, &mut |n| seen += n)
            .unwrap();
        assert_eq!(out.len() as u64, form.content_length());
        assert_eq!(seen, data.len() as u64);
        let text = String::from_utf8(out).unwrap();
        let order: Vec<usize> = [
            "name=\"content\"\r\n\r\nvztmpl\r\n",
            "name=\"checksum-algorithm\"\r\n\r\nsha256\r\n",
            "name=\"checksum\"\r\n\r\nab12\r\n",
            "name=\"filename\"; filename=\"img-v1.tar.gz\"",
            "\r\n\r\ntarball bytes\r\n--XyZ--\r\n",
        ]
        .iter()
        .map(|p| {
            text.find(p)
                .unwrap_or_else(|| panic!("{p:?} missing in {text:?}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(form.content_type(), "multipart/form-data; boundary=XyZ");
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error() {
        let form = TemplateForm::new("b", "x.tar", 10, "00");
        let mut out = Vec::new();
        let err = form
            .write(&mut &b"short"[..], &mut out, &mut |_| {})
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(random_boundary().unwrap(), random_boundary().unwrap());
    }
}
