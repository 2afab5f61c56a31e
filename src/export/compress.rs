//! Compression of the tar stream: gzip (block-parallel, one valid gzip member stream with a
//! fixed header), zstd, xz or none.

use std::io::{Read, Write};

use gzp::ZWriter;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use serde::{Deserialize, Serialize};

use super::ExportError;

/// The artifact's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `.tar.gz` (Proxmox's format; the default).
    Gzip,
    /// `.tar.zst`.
    Zstd,
    /// `.tar.xz`.
    Xz,
    /// `.tar`.
    None,
}

crate::named_choice!(Compression {
    "gzip" => Compression::Gzip,
    "zstd" => Compression::Zstd,
    "xz" => Compression::Xz,
    "none" => Compression::None,
});

impl Compression {
    /// The file extension, without a leading dot: `tar.gz`, `tar.zst`, `tar.xz`, `tar`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
            Compression::Xz => "tar.xz",
            Compression::None => "tar",
        }
    }
}

/// Knobs of [`compress_stream_with`]. The output depends on the codec settings only, never on
/// `threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    /// Worker threads (at least 1). Defaults to every core.
    pub threads: usize,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// gzip level: gzip's own default, the ratio Proxmox templates are usually made with.
const GZIP_LEVEL: u32 = 6;
/// Independent deflate blocks of this size (pigz uses 128 KiB). Fixed, so the bytes do not
/// depend on the thread count. gzp primes each block with the previous 32 KiB only with a C
/// zlib (its `any_zlib` feature needs `libz-sys`); without it, restarting the dictionary per
/// 1 MiB block costs about 1% against `gzip -6` on text (/usr/include) and 0.15% on a mixed
/// tree — not worth a C dependency.
const GZIP_BLOCK: usize = 1024 * 1024;
/// zstd level: much smaller than gzip, still fast to build on two cores.
const ZSTD_LEVEL: i32 = 9;
/// zstd job size: the unit of parallel work. Fixed explicitly (zstd's default grows with the
/// level's window) so that a 2-8 core machine has work for every worker on a small image.
/// Jobs overlap, so the ratio barely changes; the bytes depend on it, not on the workers.
pub const ZSTD_JOB_SIZE: u32 = 4 * 1024 * 1024;
/// xz preset (`xz -6`, xz's default).
const XZ_PRESET: u32 = 6;
/// xz block size: independent blocks compressed in parallel. xz's default at preset 6 is
/// 24 MiB (3 × the dictionary); 8 MiB keeps every core busy on small images for a ratio
/// cost well under 1%. The bytes depend on it, not on the thread count.
pub const XZ_BLOCK_SIZE: u64 = 8 * 1024 * 1024;
/// Read buffer for the input pipe.
const READ_BUFFER: usize = 256 * 1024;

/// Compresses `input` into `out` with every core, returning the compressed byte count.
///
/// Runs in the parent, reading the tar stream from the namespaced child's pipe. The output is
/// byte-identical for identical input, whatever the thread count:
/// - gzip: one gzip member (mtime 0, no file name, OS byte 255 "unknown", XFL 0), the deflate
///   stream cut into fixed 1 MiB blocks compressed in parallel (gzp), ended with a sync flush,
///   crc32 combined;
/// - zstd: one frame from the multi-threaded encoder with a fixed job size (always at least
///   one worker: zstd's worker mode gives the same bytes for any worker count, its
///   single-threaded mode other bytes), with a content checksum;
/// - xz: the multi-threaded encoder (even for one thread) with a fixed block size, CRC64;
/// - none: a plain copy.
pub fn compress_stream(
    kind: Compression,
    input: &mut dyn Read,
    out: &mut (dyn Write + Send),
) -> Result<u64, ExportError> {
    compress_stream_with(kind, CompressOptions::default(), input, out)
}

/// [`compress_stream`] with an explicit thread count.
pub fn compress_stream_with(
    kind: Compression,
    options: CompressOptions,
    input: &mut dyn Read,
    out: &mut (dyn Write + Send),
) -> Result<u64, ExportError> {
    let threads = options.threads.max(1);
    let mut counted = CountingWriter {
        inner: out,
        count: 0,
    };
    let codec_error = |message: String| ExportError::Compress { kind, message };
    match kind {
        Compression::None => {
            pump(kind, input, &mut counted)?;
        }
        Compression::Gzip => {
            std::thread::scope(|scope| -> Result<(), ExportError> {
                let mut encoder: ParCompress<'_, Gzip, _> = ParCompressBuilder::<Gzip>::new()
                    .num_threads(threads)
                    .and_then(|b| b.buffer_size(GZIP_BLOCK))
                    .map_err(|e| codec_error(e.to_string()))?
                    .compression_level(flate2::Compression::new(GZIP_LEVEL))
                    .from_borrowed_writer(&mut counted, scope);
                match pump(kind, input, &mut encoder) {
                    // A failed write already tore the encoder down (and `finish` would panic).
                    Err(e @ ExportError::Compress { .. }) => Err(e),
                    // Otherwise finish: dropping a running ParCompress panics on any error.
                    pumped => {
                        let finished = encoder.finish();
                        pumped?;
                        finished.map_err(|e| codec_error(e.to_string()))?;
                        Ok(())
                    }
                }
            })?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(&mut counted, ZSTD_LEVEL)
                .map_err(|e| codec_error(e.to_string()))?;
            let workers = u32::try_from(threads).unwrap_or(u32::MAX);
            encoder
                .multithread(workers)
                .and_then(|()| {
                    encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
                })
                .and_then(|()| encoder.include_checksum(true))
                .map_err(|e| codec_error(e.to_string()))?;
            pump(kind, input, &mut encoder)?;
            encoder.finish().map_err(|e| codec_error(e.to_string()))?;
        }
        Compression::Xz => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(u32::try_from(threads).unwrap_or(u32::MAX))
                .preset(XZ_PRESET)
                .block_size(XZ_BLOCK_SIZE)
                .check(liblzma::stream::Check::Crc64)
                .encoder()
                .map_err(|e| codec_error(e.to_string()))?;
            let mut encoder = liblzma::write::XzEncoder::new_stream(&mut counted, stream);
            pump(kind, input, &mut encoder)?;
            encoder.finish().map_err(|e| codec_error(e.to_string()))?;
        }
    }
    counted
        .inner
        .flush()
        .map_err(|e| codec_error(format!("cannot write the artifact: {e}")))?;
    Ok(counted.count)
}

/// Copies `input` to `out`, telling a broken input from a broken output.
fn pump(kind: Compression, input: &mut dyn Read, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ExportError::ReadStream(e)),
        };
        out.write_all(&buffer[..n])
            .map_err(|e| ExportError::Compress {
                kind,
                message: format!("cannot write the artifact: {e}"),
            })?;
    }
}

/// Counts the compressed bytes on their way to the artifact.
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails like a full disk.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::other("no space left on device"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Yields `left` bytes of noise, then fails like a dead child.
    struct BrokenPipe {
        left: usize,
        state: u32,
    }

    impl Read for BrokenPipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::other("the child died"));
            }
            let n = buf.len().min(self.left);
            for b in &mut buf[..n] {
                self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (self.state >> 16) as u8;
            }
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_failing_output_is_an_error_not_a_panic() {
        for kind in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
            Compression::None,
        ] {
            let mut input = BrokenPipe {
                left: 8 << 20,
                state: 1,
            };
            let mut input = (&mut input).take(8 << 20);
            let err = compress_stream_with(
                kind,
                CompressOptions { threads: 2 },
                &mut input,
                &mut FullDisk { room: 4096 },
            )
            .unwrap_err();
            assert!(
                matches!(err, ExportError::Compress { .. }),
                "{kind:?}: {err:?}"
            );
        }
    }

    #[test]
    fn a_failing_input_is_reported_as_such() {
        for kind in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
            Compression::None,
        ] {
            let mut input = BrokenPipe {
                left: 3 << 20,
                state: 7,
            };
            let err = compress_stream_with(
                kind,
                CompressOptions { threads: 2 },
                &mut input,
                &mut std::io::sink(),
            )
            .unwrap_err();
            assert!(
                matches!(err, ExportError::ReadStream(_)),
                "{kind:?}: {err:?}"
            );
        }
    }
}
