//! Image archives: `oci-archive` (an OCI layout in a tar) and `docker-archive` (`docker save`,
//! `podman save`). The archive is indexed once (names → offsets, seeking past the data) and
//! members are then read in place with `pread`, so nothing is extracted to a temporary directory
//! and several layers can be read at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::Digest;
use serde::Deserialize;

use crate::layout::{Compression, Image, Layer, SourceError, Store};
use crate::tarball::{Kind, Reader};

/// Symlinks between members followed before giving up (docker links duplicate layers).
const MAX_MEMBER_LINKS: u32 = 8;

enum Member {
    Data { offset: u64, size: u64 },
    Symlink(String),
    HardLink(String),
}

/// A tar archive of an image, indexed by member name.
pub struct TarStore {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

/// A member name as a key: no leading `./` or `/`, no trailing `/`.
fn key(name: &str) -> String {
    let mut s = name;
    loop {
        if let Some(r) = s.strip_prefix("./") {
            s = r;
        } else if let Some(r) = s.strip_prefix('/') {
            s = r;
        } else {
            break;
        }
    }
    s.trim_end_matches('/').to_string()
}

/// Join a symlink target to the directory of the member holding it, lexically.
fn join_member(member: &str, target: &str) -> String {
    if target.starts_with('/') {
        return key(target);
    }
    let mut parts: Vec<&str> = member.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl TarStore {
    pub fn open(path: &Path) -> Result<TarStore, SourceError> {
        let open_err = |source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let mut magic = [0u8; 4];
        let n = file.read_at(&mut magic, 0).map_err(open_err)?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(SourceError::CompressedArchive {
                path: path.to_path_buf(),
            });
        }
        let read_err = |source| SourceError::ReadArchive {
            path: path.to_path_buf(),
            source,
        };
        let len = file.metadata().map_err(open_err)?.len();
        let mut members = HashMap::new();
        // The same reader as for layers, over the file in place; member data is skipped by
        // moving the position, not read.
        let mut tar = Reader::new(Slice {
            file: &file,
            pos: 0,
            end: len,
        });
        while let Some(h) = tar.next_header().map_err(read_err)? {
            let name = key(&String::from_utf8_lossy(&h.name));
            let link = || String::from_utf8_lossy(&h.link).into_owned();
            let member = match h.kind {
                // A sparse member's data is not its content: never read in place.
                Kind::File if h.sparse.is_none() => Some(Member::Data {
                    offset: tar.position(),
                    size: h.size,
                }),
                Kind::Symlink => Some(Member::Symlink(link())),
                Kind::HardLink => Some(Member::HardLink(link())),
                _ => None,
            };
            if let Some(m) = member {
                members.insert(name, m);
            }
            tar.skip_data_by(|slice, n| {
                let left = slice.end - slice.pos;
                if n > left {
                    return Err(n - left);
                }
                slice.pos += n;
                Ok(())
            })
            .map_err(read_err)?;
        }
        Ok(TarStore {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    /// Offset and size of a member's data, following links between members.
    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = key(name);
        for _ in 0..MAX_MEMBER_LINKS {
            match self.members.get(&name)? {
                Member::Data { offset, size } => return Some((*offset, *size)),
                Member::Symlink(t) => name = join_member(&name, t),
                Member::HardLink(t) => name = key(t),
            }
        }
        None
    }

    pub fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }
}

/// A member's bytes, read in place.
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Store for TarStore {
    fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64), SourceError> {
        let (offset, size) = self.locate(name).ok_or_else(|| SourceError::Missing {
            name: name.to_string(),
            source_path: self.path.clone(),
        })?;
        let slice = Slice {
            file: &self.file,
            pos: offset,
            end: offset + size,
        };
        Ok((Box::new(slice), size))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// One image in a docker-archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Whether `tag` (e.g. `localhost/test:latest`) is what the user named as `reference`.
pub fn ref_matches(tag: &str, reference: &str) -> bool {
    if tag == reference {
        return true;
    }
    // Short forms: "test:latest" for "localhost/test:latest", "test" for "...test:latest".
    let with_tag = if reference
        .rsplit('/')
        .next()
        .is_some_and(|r| r.contains(':'))
    {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    };
    tag == with_tag || tag.ends_with(&format!("/{with_tag}"))
}

/// The sha256 digest a docker-archive member is named after (`<hex>.json`, `<hex>.tar`,
/// `blobs/sha256/<hex>`), if it is named that way.
fn digest_in_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next()?;
    let hex = base
        .strip_suffix(".json")
        .or_else(|| base.strip_suffix(".tar"))
        .unwrap_or(base);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Digest::from_str(&format!("sha256:{hex}")).ok()
    } else {
        None
    }
}

/// Read a docker-archive: pick the image (by `reference` among RepoTags, or the only one),
/// verify its config by the digest in its name, and list its layers with the config's diff_ids.
pub fn docker_image(store: TarStore, reference: Option<&str>) -> Result<Image, SourceError> {
    let (raw, _) = crate::layout::read_doc(&store, "manifest.json", None, None)?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&raw).map_err(|source| SourceError::Json {
            what: "manifest.json".into(),
            source,
        })?;
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let chosen: Vec<&DockerEntry> = match reference {
        Some(r) => entries
            .iter()
            .filter(|e| tags(e).iter().any(|t| ref_matches(t, r)))
            .collect(),
        None => entries.iter().collect(),
    };
    let entry = match chosen.as_slice() {
        [one] => *one,
        [] => {
            return Err(SourceError::NoSuchImage {
                reference: reference.unwrap_or_default().to_string(),
                available: entries.iter().flat_map(tags).collect(),
            })
        }
        _ => {
            return Err(SourceError::Ambiguous {
                count: chosen.len(),
                available: entries.iter().flat_map(tags).collect(),
            })
        }
    };
    let config_digest = digest_in_name(&entry.config).ok_or_else(|| SourceError::Unverifiable {
        name: entry.config.clone(),
    })?;
    let (config_raw, _) =
        crate::layout::read_doc(&store, &entry.config, Some(&config_digest), None)?;
    let config = crate::layout::parse_config(&config_raw, &config_digest)?;
    let diff_ids = crate::layout::diff_ids(&config, entry.layers.len())?;
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
        let (_, size) = store.open(name)?;
        layers.push(Layer {
            path: name.clone(),
            media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
            digest: None,
            size,
            compression: Compression::Detect,
            diff_id: Some(diff_id),
        });
    }
    let index = entries
        .iter()
        .position(|e| std::ptr::eq(e, entry))
        .unwrap_or(0);
    let manifest = serde_json::from_slice::<Vec<serde_json::Value>>(&raw)
        .ok()
        .and_then(|v| v.into_iter().nth(index))
        .unwrap_or_default();
    Ok(Image {
        format: crate::layout::Format::DockerArchive,
        manifest_digest: None,
        manifest,
        config_digest,
        config_raw,
        config,
        layers,
        store: Box::new(store),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_keys_and_links() {
        assert_eq!(key("./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(key("/x/"), "x");
        assert_eq!(join_member("abc/layer.tar", "../def.tar"), "def.tar");
        assert_eq!(join_member("abc/layer.tar", "/def.tar"), "def.tar");
    }

    #[test]
    fn refs_match_short_forms() {
        assert!(ref_matches(
            "localhost/test:latest",
            "localhost/test:latest"
        ));
        assert!(ref_matches("localhost/test:latest", "test:latest"));
        assert!(ref_matches("localhost/test:latest", "test"));
        assert!(!ref_matches("localhost/test:latest", "est"));
        assert!(!ref_matches("localhost/test:v1", "test"));
    }

    #[test]
    fn digests_from_member_names() {
        let hex = "a".repeat(64);
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name("config.json").is_none());
    }
}
