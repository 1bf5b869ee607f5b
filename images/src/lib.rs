//! husk-images: OCI image layouts and archives (`oci-archive`, `docker save`/`podman save`) to
//! runtime bundles, verified and confined.
//!
//! [`layout::open`] finds the image (`PATH[:REF]`) and verifies its manifest and config;
//! [`unpack::unpack`] streams the layers through [`digest`] checks and decompression into
//! [`layer::Applier`], which reads each tar stream with [`tarball::Reader`] (what Go's
//! archive/tar reads, as umoci and containerd do), counts it against the [`Bounds`] and writes
//! only through [`confine`]d paths, then [`config`] writes `config.json`. [`pack::pack`] makes a one-layer image from a directory (for tests and
//! offline use).
//!
//! The runtime's default spec is a parameter ([`unpack::UnpackOptions::default_spec`]) rather
//! than a dependency on husk-runtime: the `husk` binary depends on this crate, and Cargo allows
//! no cycle between the two packages; it also keeps this crate usable without the runtime.

pub mod archive;
pub mod config;
pub mod confine;
pub mod digest;
mod gzip;
pub mod layer;
pub mod layout;
pub mod pack;
pub mod tarball;
pub mod unpack;

pub use layer::Bounds;
pub use layout::{open, Image, SourceError};
pub use pack::{pack, PackOptions};
pub use unpack::{unpack, unpack_with, Event, UnpackError, UnpackOptions, Unpacked};

use serde_json::{json, Value};

/// What `husk image inspect` prints: the format, the manifest and config as stored, and the
/// layers with their digests, sizes and diff_ids.
pub fn inspect(image: &Image) -> Value {
    json!({
        "format": image.format,
        "manifestDigest": image.manifest_digest.as_ref().map(|d| d.to_string()),
        "configDigest": image.config_digest.to_string(),
        "manifest": image.manifest,
        "config": serde_json::from_slice::<Value>(&image.config_raw).unwrap_or_default(),
        "layers": image.layers,
    })
}
