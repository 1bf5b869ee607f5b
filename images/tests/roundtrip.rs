//! `pack` then `unpack` gives back the same tree (types, modes, owners, link targets, hard links,
//! contents) for each layer compression, and an index with several platforms yields this host's.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use husk_images::layout::Compression;
use husk_images::{PackOptions, UnpackOptions};
use serde_json::json;

fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let p = root.join(&rel);
        let md = fs::symlink_metadata(&p).unwrap();
        let what = if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(rel.join(e.unwrap().file_name()));
            }
            "dir".to_string()
        } else if md.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(&p).unwrap())
        } else {
            format!("file {:?} nlink {}", fs::read(&p).unwrap(), md.nlink())
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            ),
        );
    }
    out
}

fn sample_tree(r: &Path) {
    fs::create_dir_all(r.join("bin")).unwrap();
    fs::create_dir_all(r.join("etc/conf.d")).unwrap();
    fs::create_dir_all(r.join("private")).unwrap();
    fs::write(r.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        r.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:100:101::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        r.join("etc/group"),
        "root:x:0:\napp:x:101:\nextra:x:102:app\n",
    )
    .unwrap();
    fs::write(r.join("etc/conf.d/big"), vec![b'z'; 300_000]).unwrap();
    fs::hard_link(r.join("bin/tool"), r.join("bin/tool2")).unwrap();
    symlink("tool", r.join("bin/alias")).unwrap();
    symlink("/etc/passwd", r.join("etc/abs")).unwrap();
    fs::set_permissions(r.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(r.join("private"), Some(100), Some(101)).unwrap();
    }
}

fn opts(args: Option<Vec<String>>) -> UnpackOptions {
    UnpackOptions {
        default_spec: json!({ "process": { "env": ["PATH=/bin", "TERM=xterm"] } }),
        args,
        terminal: false,
        chown: None,
        bounds: husk_images::Bounds::default(),
    }
}

#[test]
fn pack_then_unpack_gives_the_same_tree() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    for (i, c) in [Compression::Gzip, Compression::Zstd, Compression::None]
        .into_iter()
        .enumerate()
    {
        let out = t.path().join(format!("img{i}"));
        let archive = t.path().join(format!("img{i}.tar"));
        let p = PackOptions {
            compression: c,
            user: Some("app".into()),
            entrypoint: Some(vec!["/bin/tool".into()]),
            cmd: Some(vec!["--flag".into()]),
            env: vec!["PATH=/bin".into(), "MODE=test".into()],
            workdir: Some("etc".into()),
            ..PackOptions::default()
        };
        husk_images::pack(&src, &out, &p).unwrap();
        husk_images::pack(&src, &archive, &p).unwrap();
        for (k, img_src) in [out.clone(), archive.clone()].iter().enumerate() {
            let image = husk_images::open(&format!("{}:latest", img_src.display())).unwrap();
            assert_eq!(image.layers[0].compression, c);
            let bundle = t.path().join(format!("bundle{i}-{k}"));
            let args = (k == 1).then(|| vec!["other".to_string()]);
            husk_images::unpack(&image, &bundle, &opts(args)).unwrap();
            assert_eq!(describe(&src), describe(&bundle.join("rootfs")), "{c:?}");
            let cfg: serde_json::Value =
                serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
            let pr = &cfg["process"];
            let want_args = if k == 1 {
                json!(["/bin/tool", "other"])
            } else {
                json!(["/bin/tool", "--flag"])
            };
            assert_eq!(pr["args"], want_args);
            assert_eq!(
                pr["user"],
                json!({ "uid": 100, "gid": 101, "additionalGids": [102] })
            );
            assert_eq!(pr["cwd"], json!("/etc"));
            // No TERM without a terminal; HOME from the user's passwd entry.
            assert_eq!(
                pr["env"],
                json!(["PATH=/bin", "MODE=test", "HOME=/home/app"])
            );
            assert_eq!(cfg["root"], json!({ "path": "rootfs", "readonly": false }));
        }
    }
}

#[test]
fn an_index_with_several_platforms_yields_this_hosts_image() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    let out = t.path().join("img");
    husk_images::pack(&src, &out, &PackOptions::default()).unwrap();
    // Wrap the manifest into a nested index next to a foreign-platform twin.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let mine = index["manifests"][0].clone();
    let (os, arch) = husk_images::layout::host_platform();
    let mut native = mine.clone();
    native.as_object_mut().unwrap().remove("annotations");
    native["platform"] = json!({ "os": os, "architecture": arch });
    let mut foreign = native.clone();
    foreign["platform"] = json!({ "os": "linux", "architecture": "s390x" });
    foreign["digest"] = json!(husk_images::digest::sha256_of(b"missing on purpose"));
    let inner = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [foreign, native] })
    .to_string();
    let d = husk_images::digest::sha256_of(inner.as_bytes());
    fs::write(
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
        &inner,
    )
    .unwrap();
    let top = json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": inner.len(),
        "annotations": { "org.opencontainers.image.ref.name": "multi" } }] });
    fs::write(out.join("index.json"), top.to_string()).unwrap();
    let image = husk_images::open(&format!("{}:multi", out.display())).unwrap();
    assert_eq!(
        image.manifest_digest.unwrap().to_string(),
        mine["digest"].as_str().unwrap()
    );
    let err = husk_images::open(&format!("{}:nope", out.display()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("no image named \"nope\""), "{err}");
}
