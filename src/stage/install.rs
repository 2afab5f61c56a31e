//! Installing packages into the staging root: safe extraction of `.deb`s and configuration
//! with the target's own dpkg, in the order debootstrap/mmdebstrap use.
