//! Opening a tarball whatever its compression: the magic bytes decide, never the file name.

use std::io::{self, Read};
use std::path::Path;

use super::{Compression, VerifyError};

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
/// `ustar` at offset 257 of the first header (POSIX and GNU tar).
const USTAR_OFFSET: usize = 257;

/// Detect the compression of `reader` and return a reader of the decompressed tar stream.
pub(super) fn open<'a>(
    name: &Path,
    mut reader: impl Read + 'a,
) -> Result<(Compression, Box<dyn Read + 'a>), VerifyError> {
    let mut head = Vec::with_capacity(512);
    (&mut reader)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|source| VerifyError::Open {
            path: name.to_path_buf(),
            source,
        })?;
    let compression = if head.starts_with(GZIP) {
        Compression::Gzip
    } else if head.starts_with(ZSTD) {
        Compression::Zstd
    } else if head.starts_with(XZ) {
        Compression::Xz
    } else if head.len() >= USTAR_OFFSET + 5 && &head[USTAR_OFFSET..USTAR_OFFSET + 5] == b"ustar" {
        Compression::None
    } else {
        return Err(VerifyError::UnknownFormat {
            path: name.to_path_buf(),
            magic: hex::encode(&head[..head.len().min(8)]),
        });
    };
    let whole = io::Cursor::new(head).chain(reader);
    let stream: Box<dyn Read + 'a> = match compression {
        // Multi-member: parallel gzip writers may emit several members.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(|source| {
                VerifyError::Corrupt {
                    path: name.to_path_buf(),
                    compression,
                    entries: 0,
                    last: "-".into(),
                    source,
                }
            })?)
        }
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
        Compression::None => Box::new(whole),
    };
    Ok((compression, stream))
}
