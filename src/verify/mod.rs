//! The golden-image contract, checked on any tarball (ours, or one made by Packer/Docker).
//! Reads the tarball; never modifies it.
