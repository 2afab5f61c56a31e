//! Artifacts: `<image>-v<N>.tar.gz` naming, monotonic versions, no-clobber publishing, the
//! `.sha256` and `.manifest.json` beside each image. An existing version is never overwritten.
