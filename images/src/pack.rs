//! `husk image pack`: a directory → a one-layer OCI image (a layout directory, or an
//! oci-archive when OUT ends in `.tar`), so tests and offline rigs can make images without an
//! engine. Entries are written in sorted order with their owners, modes and times (not xattrs),
//! hard links kept as links, so the same tree always packs to the same layer.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::digest::Hasher;
use crate::layout::{Compression, REF_ANNOTATION};

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path:?} exists and is not an empty directory")]
    OutExists { path: PathBuf },
    #[error("read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The `org.opencontainers.image.ref.name` of the image in the index.
    pub reference: String,
    pub compression: Compression,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            reference: "latest".into(),
            compression: Compression::Gzip,
            entrypoint: None,
            cmd: Some(vec!["/bin/sh".into()]),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            workdir: None,
            user: None,
        }
    }
}

/// Hashes and counts what is written through it.
struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Pack `rootfs` into `out`; returns the manifest descriptor as JSON.
pub fn pack(rootfs: &Path, out: &Path, opts: &PackOptions) -> Result<Value, PackError> {
    let archive = out.extension().is_some_and(|e| e == "tar");
    let layout_dir = if archive {
        out.with_extension("tar.layout-tmp")
    } else {
        out.to_path_buf()
    };
    let free = match fs::read_dir(&layout_dir) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    if !free || (archive && out.exists()) {
        return Err(PackError::OutExists {
            path: if archive {
                out.to_path_buf()
            } else {
                layout_dir
            },
        });
    }
    let result = write_layout(rootfs, &layout_dir, opts).and_then(|desc| {
        if archive {
            tar_dir(&layout_dir, out)?;
        }
        Ok(desc)
    });
    if archive || result.is_err() {
        let _ = fs::remove_dir_all(&layout_dir);
    }
    if result.is_err() && archive {
        let _ = fs::remove_file(out);
    }
    result
}

fn werr(path: &Path) -> impl FnOnce(io::Error) -> PackError + '_ {
    move |source| PackError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn write_layout(rootfs: &Path, dir: &Path, opts: &PackOptions) -> Result<Value, PackError> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(werr(&blobs))?;
    let (layer_digest, layer_size, diff_id) = write_layer(rootfs, &blobs, opts.compression)?;
    let media_type = match opts.compression {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        Compression::None | Compression::Detect => "application/vnd.oci.image.layer.v1.tar",
    };
    let (os, arch) = crate::layout::host_platform();
    let mut config = json!({
        "architecture": arch,
        "os": os,
        "config": { "Env": opts.env },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "husk image pack" }],
    });
    let c = &mut config["config"];
    if let Some(v) = &opts.entrypoint {
        c["Entrypoint"] = json!(v);
    }
    if let Some(v) = &opts.cmd {
        c["Cmd"] = json!(v);
    }
    if let Some(v) = &opts.workdir {
        c["WorkingDir"] = json!(v);
    }
    if let Some(v) = &opts.user {
        c["User"] = json!(v);
    }
    let config_desc = write_blob(&blobs, "application/vnd.oci.image.config.v1+json", &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [{ "mediaType": media_type, "digest": layer_digest, "size": layer_size }],
    });
    let mut manifest_desc = write_blob(
        &blobs,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )?;
    manifest_desc["annotations"] = json!({ REF_ANNOTATION: opts.reference });
    let index = json!({ "schemaVersion": 2, "manifests": [manifest_desc] });
    let put = |name: &str, v: &Value| {
        let p = dir.join(name);
        fs::write(&p, v.to_string()).map_err(werr(&p))
    };
    put("oci-layout", &json!({ "imageLayoutVersion": "1.0.0" }))?;
    put("index.json", &index)?;
    Ok(manifest_desc)
}

fn write_blob(blobs: &Path, media_type: &str, doc: &Value) -> Result<Value, PackError> {
    let data = doc.to_string();
    let digest = crate::digest::sha256_of(data.as_bytes());
    let p = blobs.join(digest.trim_start_matches("sha256:"));
    fs::write(&p, &data).map_err(werr(&p))?;
    Ok(json!({ "mediaType": media_type, "digest": digest, "size": data.len() }))
}

/// Write the layer blob; returns (digest, size, diff_id).
fn write_layer(
    rootfs: &Path,
    blobs: &Path,
    compression: Compression,
) -> Result<(String, u64, String), PackError> {
    let tmp = blobs.join("layer.tmp");
    let file = File::create(&tmp).map_err(werr(&tmp))?;
    let mut outer = HashWriter {
        inner: io::BufWriter::new(file),
        hasher: Hasher::sha256(),
        count: 0,
    };
    let diff_id = {
        let enc: Box<dyn Write> = match compression {
            Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
                &mut outer,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Box::new(
                zstd::stream::write::Encoder::new(&mut outer, 3)
                    .map_err(werr(&tmp))?
                    .auto_finish(),
            ),
            Compression::None | Compression::Detect => Box::new(&mut outer),
        };
        let inner = HashWriter {
            inner: enc,
            hasher: Hasher::sha256(),
            count: 0,
        };
        let mut builder = tar::Builder::new(inner);
        builder.follow_symlinks(false);
        let mut links = HashMap::new();
        add_tree(&mut builder, rootfs, Path::new(""), &mut links)?;
        let mut inner = builder.into_inner().map_err(werr(&tmp))?;
        inner.flush().map_err(werr(&tmp))?;
        let HashWriter {
            inner: enc, hasher, ..
        } = inner;
        drop(enc); // finishes the compressed stream
        hasher.finish()
    };
    outer.flush().map_err(werr(&tmp))?;
    let HashWriter { hasher, count, .. } = outer;
    let digest = hasher.finish();
    let dst = blobs.join(digest.trim_start_matches("sha256:"));
    fs::rename(&tmp, &dst).map_err(werr(&dst))?;
    Ok((digest, count, diff_id))
}

fn add_tree<W: Write>(
    b: &mut tar::Builder<W>,
    base: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), PackError> {
    let dir = base.join(rel);
    let rerr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError::Read { path, source }
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(rerr(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(rerr(&dir))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = base.join(&rel);
        let md = fs::symlink_metadata(&path).map_err(rerr(&path))?;
        let ft = md.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(md.uid()));
        h.set_gid(u64::from(md.gid()));
        h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
        h.set_size(0);
        let werr = |source| PackError::Write {
            path: rel.clone(),
            source,
        };
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &rel, io::empty()).map_err(werr)?;
            add_tree(b, base, &rel, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(rerr(&path))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &rel, &target).map_err(werr)?;
        } else if md.nlink() > 1 && links.contains_key(&(md.dev(), md.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            let target = links[&(md.dev(), md.ino())].clone();
            b.append_link(&mut h, &rel, &target).map_err(werr)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                links.insert((md.dev(), md.ino()), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            let f = File::open(&path).map_err(rerr(&path))?;
            b.append_data(&mut h, &rel, f).map_err(werr)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            let rdev = md.rdev();
            h.set_device_major(libc::major(rdev)).map_err(werr)?;
            h.set_device_minor(libc::minor(rdev)).map_err(werr)?;
            b.append_data(&mut h, &rel, io::empty()).map_err(werr)?;
        }
        // Sockets have no place in an image.
    }
    Ok(())
}

/// Tar a layout directory into an oci-archive (the same shape podman writes).
fn tar_dir(dir: &Path, out: &Path) -> Result<(), PackError> {
    let f = File::create(out).map_err(werr(out))?;
    let mut b = tar::Builder::new(io::BufWriter::new(f));
    b.follow_symlinks(false);
    for name in ["oci-layout", "index.json", "blobs"] {
        let p = dir.join(name);
        if p.is_dir() {
            b.append_dir_all(name, &p).map_err(werr(out))?;
        } else {
            b.append_path_with_name(&p, name).map_err(werr(out))?;
        }
    }
    let mut w = b.into_inner().map_err(werr(out))?;
    w.flush().map_err(werr(out))
}
