//! Finding the image: an OCI image layout directory, an `oci-archive` or a `docker-archive`,
//! each optionally followed by `:REF`. The index is walked to the one manifest for this host's
//! platform (or the one named), and the manifest and config are read and verified against their
//! digests and sizes before they are parsed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::Value;

use crate::archive::{self, TarStore};
use crate::digest::{self, DigestError};

/// The biggest JSON document (index, manifest, config) husk reads: they are small, and a
/// descriptor that says otherwise is hostile.
pub const MAX_DOC: u64 = 16 << 20;

/// How deep an index may nest other indexes.
const MAX_INDEX_DEPTH: u32 = 4;

pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("open {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path:?} as an image archive (an oci-archive or a docker-archive: a tar file)")]
    ReadArchive {
        path: PathBuf,
        #[source]
        source: crate::tarball::TarError,
    },
    #[error("{path:?} is compressed: decompress it first (image archives are plain tar files)")]
    CompressedArchive { path: PathBuf },
    #[error("{path:?} is not an OCI image layout, an oci-archive or a docker-archive")]
    NotAnImage { path: PathBuf },
    #[error("{name} is missing from {source_path:?}")]
    Missing { name: String, source_path: PathBuf },
    #[error("{name} in {source_path:?} is not a regular file")]
    NotAFile { name: String, source_path: PathBuf },
    #[error("{name} is {size} bytes, more than the {MAX_DOC} allowed for a JSON document")]
    TooLarge { name: String, size: u64 },
    #[error("read {name}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("verify {name}")]
    Verify {
        name: String,
        #[source]
        source: DigestError,
    },
    #[error("parse {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported OCI layout version {version:?}")]
    LayoutVersion { version: String },
    #[error("no image named {reference:?} (images: {available:?})")]
    NoSuchImage {
        reference: String,
        available: Vec<String>,
    },
    #[error("no image for {os}/{arch} (platforms: {available:?})")]
    NoPlatform {
        os: String,
        arch: String,
        available: Vec<String>,
    },
    #[error("{count} images match; name one as SRC:REF (images: {available:?})")]
    Ambiguous {
        count: usize,
        available: Vec<String>,
    },
    #[error("indexes nest deeper than {MAX_INDEX_DEPTH} levels")]
    TooDeep,
    #[error("{what} has unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("the manifest lists {layers} layers but the config has {diff_ids} diff_ids")]
    DiffIdCount { layers: usize, diff_ids: usize },
    #[error("config rootfs.diff_ids[{index}]: {value:?} is not a digest")]
    BadDiffId { index: usize, value: String },
    #[error("{name} cannot be verified: its name is not a sha256 digest")]
    Unverifiable { name: String },
}

/// Where an image's files come from: a directory or an indexed tar archive.
pub trait Store: Sync + Send {
    /// A file by its path in the layout or archive (`index.json`, `blobs/sha256/<hex>`, ...),
    /// and its size.
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64), SourceError>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// An OCI image layout directory.
pub struct DirStore {
    dir: PathBuf,
}

impl Store for DirStore {
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64), SourceError> {
        let path = self.dir.join(name);
        let file = File::open(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SourceError::Missing {
                    name: name.to_string(),
                    source_path: self.dir.clone(),
                }
            } else {
                SourceError::Open {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let meta = file
            .metadata()
            .map_err(|source| SourceError::Open { path, source })?;
        if !meta.is_file() {
            return Err(SourceError::NotAFile {
                name: name.to_string(),
                source_path: self.dir.clone(),
            });
        }
        Ok((Box::new(file), meta.len()))
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    OciLayout,
    OciArchive,
    DockerArchive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Not declared (docker-archive): decided from the first bytes.
    Detect,
}

/// One layer to apply.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// Its name in the store.
    #[serde(skip)]
    pub path: String,
    pub media_type: String,
    /// The digest of the blob as stored (compressed); docker-archives have none.
    pub digest: Option<Digest>,
    pub size: u64,
    pub compression: Compression,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    #[serde(rename = "diffID")]
    pub diff_id: Option<Digest>,
}

impl Layer {
    /// How the layer is named in messages.
    pub fn name(&self) -> String {
        match (&self.digest, &self.diff_id) {
            (Some(d), _) => d.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => self.path.clone(),
        }
    }
}

/// An image, its manifest and config verified, ready to unpack.
pub struct Image {
    pub format: Format,
    pub manifest_digest: Option<Digest>,
    pub manifest: Value,
    pub config_digest: Digest,
    pub config_raw: Vec<u8>,
    pub config: ImageConfiguration,
    pub layers: Vec<Layer>,
    pub store: Box<dyn Store>,
}

/// Split `SRC[:REF]`: the whole string if it names an existing path, else at the last `:`.
/// Transport prefixes as podman and skopeo write them (`oci:`, `oci-archive:`,
/// `docker-archive:`) are accepted and dropped.
pub fn parse_source(src: &str) -> (PathBuf, Option<String>) {
    let src = ["oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .find_map(|p| src.strip_prefix(p))
        .unwrap_or(src);
    if Path::new(src).exists() {
        return (PathBuf::from(src), None);
    }
    // A ref may itself contain ':' (localhost/x:latest): try each split from the left.
    for (i, _) in src.match_indices(':') {
        let (p, r) = (&src[..i], &src[i + 1..]);
        if !p.is_empty() && Path::new(p).exists() && !r.is_empty() {
            return (PathBuf::from(p), Some(r.to_string()));
        }
    }
    (PathBuf::from(src), None)
}

/// Open and verify the image named by `src` (`PATH[:REF]`).
pub fn open(src: &str) -> Result<Image, SourceError> {
    let (path, reference) = parse_source(src);
    let meta = std::fs::metadata(&path).map_err(|source| SourceError::Open {
        path: path.clone(),
        source,
    })?;
    if meta.is_dir() {
        let store = DirStore { dir: path.clone() };
        if !path.join("oci-layout").exists() {
            return Err(SourceError::NotAnImage { path });
        }
        return oci_image(Box::new(store), Format::OciLayout, reference.as_deref());
    }
    let store = TarStore::open(&path)?;
    if store.has("oci-layout") && store.has("index.json") {
        oci_image(Box::new(store), Format::OciArchive, reference.as_deref())
    } else if store.has("manifest.json") {
        archive::docker_image(store, reference.as_deref())
    } else {
        Err(SourceError::NotAnImage { path })
    }
}

/// Read a small JSON document, refusing more than [`MAX_DOC`] bytes, and check it against a
/// digest and size when the caller has them.
pub fn read_doc(
    store: &dyn Store,
    name: &str,
    digest: Option<&Digest>,
    size: Option<u64>,
) -> Result<(Vec<u8>, u64), SourceError> {
    if let Some(s) = size {
        if s > MAX_DOC {
            return Err(SourceError::TooLarge {
                name: name.to_string(),
                size: s,
            });
        }
    }
    let (r, actual) = store.open(name)?;
    if actual > MAX_DOC {
        return Err(SourceError::TooLarge {
            name: name.to_string(),
            size: actual,
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(actual).unwrap_or(0));
    r.take(MAX_DOC + 1)
        .read_to_end(&mut data)
        .map_err(|source| SourceError::Read {
            name: name.to_string(),
            source,
        })?;
    if let Some(d) = digest {
        digest::check(&data, d, size).map_err(|source| SourceError::Verify {
            name: name.to_string(),
            source,
        })?;
    }
    Ok((data, actual))
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.digest())
}

fn read_blob(store: &dyn Store, desc: &Descriptor, what: &str) -> Result<Vec<u8>, SourceError> {
    let name = format!("{what} {}", desc.digest());
    let path = blob_name(desc.digest());
    if desc.size() > MAX_DOC {
        return Err(SourceError::TooLarge {
            name,
            size: desc.size(),
        });
    }
    read_doc(store, &path, Some(desc.digest()), Some(desc.size()))
        .map_err(|e| match e {
            SourceError::Verify { source, .. } => SourceError::Verify { name, source },
            SourceError::Missing { source_path, .. } => SourceError::Missing {
                name: format!("{name} ({path})"),
                source_path,
            },
            e => e,
        })
        .map(|(d, _)| d)
}

pub fn parse_config(raw: &[u8], digest: &Digest) -> Result<ImageConfiguration, SourceError> {
    serde_json::from_slice(raw).map_err(|source| SourceError::Json {
        what: format!("config {digest}"),
        source,
    })
}

/// The config's diff_ids as digests, checked to be one per layer.
pub fn diff_ids(config: &ImageConfiguration, layers: usize) -> Result<Vec<Digest>, SourceError> {
    let ids = config.rootfs().diff_ids();
    if ids.len() != layers {
        return Err(SourceError::DiffIdCount {
            layers,
            diff_ids: ids.len(),
        });
    }
    ids.iter()
        .enumerate()
        .map(|(index, v)| {
            v.parse::<Digest>().map_err(|_| SourceError::BadDiffId {
                index,
                value: v.clone(),
            })
        })
        .collect()
}

/// This host's platform in OCI terms.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

fn is_index(mt: &str) -> bool {
    mt == "application/vnd.oci.image.index.v1+json"
        || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn is_manifest(mt: &str) -> bool {
    mt == "application/vnd.oci.image.manifest.v1+json"
        || mt == "application/vnd.docker.distribution.manifest.v2+json"
}

/// The compression of a layer from its media type (OCI and docker names).
pub fn compression_of(mt: &str) -> Option<Compression> {
    if mt.ends_with("tar+gzip") || mt.ends_with("tar.gzip") {
        Some(Compression::Gzip)
    } else if mt.ends_with("tar+zstd") || mt.ends_with("tar.zstd") {
        Some(Compression::Zstd)
    } else if mt.ends_with(".tar") || mt.ends_with("v1.tar") {
        Some(Compression::None)
    } else {
        None
    }
}

fn ref_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_ANNOTATION))
        .map(String::as_str)
}

fn platform_of(d: &Descriptor) -> Option<(String, String)> {
    d.platform()
        .as_ref()
        .map(|p| (p.os().to_string(), p.architecture().to_string()))
}

/// The image manifests an index offers for `reference` (all, without one), with nested indexes
/// expanded.
fn candidates(
    store: &dyn Store,
    descs: &[Descriptor],
    reference: Option<&str>,
    depth: u32,
    out: &mut Vec<Descriptor>,
) -> Result<(), SourceError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(SourceError::TooDeep);
    }
    for d in descs {
        if let Some(r) = reference {
            match ref_of(d) {
                Some(name) if archive::ref_matches(name, r) => {}
                _ => continue,
            }
        }
        let mt = d.media_type().to_string();
        if is_index(&mt) {
            let raw = read_blob(store, d, "index")?;
            let idx: ImageIndex =
                serde_json::from_slice(&raw).map_err(|source| SourceError::Json {
                    what: format!("index {}", d.digest()),
                    source,
                })?;
            candidates(store, idx.manifests(), None, depth + 1, out)?;
        } else if is_manifest(&mt) {
            out.push(d.clone());
        }
    }
    Ok(())
}

fn oci_image(
    store: Box<dyn Store>,
    format: Format,
    reference: Option<&str>,
) -> Result<Image, SourceError> {
    let (raw, _) = read_doc(store.as_ref(), "oci-layout", None, None)?;
    let layout: Value = serde_json::from_slice(&raw).map_err(|source| SourceError::Json {
        what: "oci-layout".into(),
        source,
    })?;
    let version = layout["imageLayoutVersion"].as_str().unwrap_or_default();
    if !version.starts_with("1.") {
        return Err(SourceError::LayoutVersion {
            version: version.to_string(),
        });
    }
    let (raw, _) = read_doc(store.as_ref(), "index.json", None, None)?;
    let index: ImageIndex = serde_json::from_slice(&raw).map_err(|source| SourceError::Json {
        what: "index.json".into(),
        source,
    })?;
    let refs: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| ref_of(d).map(str::to_string))
        .collect();
    let mut found = Vec::new();
    candidates(store.as_ref(), index.manifests(), reference, 0, &mut found)?;
    if found.is_empty() {
        return Err(SourceError::NoSuchImage {
            reference: reference.unwrap_or_default().to_string(),
            available: refs,
        });
    }
    let (os, arch) = host_platform();
    let platforms: Vec<String> = found
        .iter()
        .filter_map(platform_of)
        .map(|(o, a)| format!("{o}/{a}"))
        .collect();
    let fits: Vec<&Descriptor> = found
        .iter()
        .filter(|d| platform_of(d).is_none_or(|(o, a)| o == os && a == arch))
        .collect();
    let desc = match fits.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(SourceError::NoPlatform {
                os: os.into(),
                arch: arch.into(),
                available: platforms,
            })
        }
        many => {
            return Err(SourceError::Ambiguous {
                count: many.len(),
                available: refs,
            })
        }
    };
    let raw = read_blob(store.as_ref(), &desc, "manifest")?;
    let manifest: ImageManifest =
        serde_json::from_slice(&raw).map_err(|source| SourceError::Json {
            what: format!("manifest {}", desc.digest()),
            source,
        })?;
    let cfg = manifest.config();
    let cmt = cfg.media_type().to_string();
    if cmt != "application/vnd.oci.image.config.v1+json"
        && cmt != "application/vnd.docker.container.image.v1+json"
    {
        return Err(SourceError::MediaType {
            what: format!("config {}", cfg.digest()),
            media_type: cmt,
        });
    }
    let config_raw = read_blob(store.as_ref(), cfg, "config")?;
    let config = parse_config(&config_raw, cfg.digest())?;
    let ids = diff_ids(&config, manifest.layers().len())?;
    let mut layers = Vec::new();
    for (d, diff_id) in manifest.layers().iter().zip(ids) {
        // Refuse what cannot be verified now, not after the layers before it are applied.
        digest::Hasher::for_digest(d.digest()).map_err(|source| SourceError::Verify {
            name: format!("layer {}", d.digest()),
            source,
        })?;
        let mt = d.media_type().to_string();
        let compression = compression_of(&mt).ok_or_else(|| SourceError::MediaType {
            what: format!("layer {}", d.digest()),
            media_type: mt.clone(),
        })?;
        layers.push(Layer {
            path: blob_name(d.digest()),
            media_type: mt,
            digest: Some(d.digest().clone()),
            size: d.size(),
            compression,
            diff_id: Some(diff_id),
        });
    }
    Ok(Image {
        format,
        manifest_digest: Some(desc.digest().clone()),
        manifest: serde_json::from_slice(&raw).unwrap_or_default(),
        config_digest: cfg.digest().clone(),
        config_raw,
        config,
        layers,
        store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_split_at_the_ref() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("img");
        std::fs::create_dir(&p).unwrap();
        let s = p.display().to_string();
        assert_eq!(parse_source(&s), (p.clone(), None));
        assert_eq!(
            parse_source(&format!("{s}:localhost/x:latest")),
            (p.clone(), Some("localhost/x:latest".into()))
        );
        assert_eq!(
            parse_source(&format!("oci:{s}:v1")),
            (p.clone(), Some("v1".into()))
        );
    }

    #[test]
    fn media_types_to_compression() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", Option::None),
        ] {
            assert_eq!(compression_of(mt), c, "{mt}");
        }
    }
}
