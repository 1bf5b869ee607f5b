//! The hostile-archive corpus: images built here, byte by byte, that try to write outside the
//! rootfs or are broken on purpose. Each must be refused with an error that names the problem,
//! leave nothing outside the target, and leave no bundle behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use husk_images::{UnpackOptions, Unpacked};
use serde_json::{json, Value};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A tar stream written header by header, so names tar libraries refuse ("../x", "/x") and
/// sizes that lie can be made.
#[derive(Default)]
struct RawTar(Vec<u8>);

fn octal(field: &mut [u8], v: u64) {
    let mut s = format!("{:0w$o}\0", v, w = field.len() - 1);
    if s.len() > field.len() {
        s = format!("{:0w$o}", v, w = field.len()); // all digits, no NUL (as GNU tar does)
    }
    field.copy_from_slice(s.as_bytes());
}

/// A ustar header block (checksum not yet set: see [`seal`]).
fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], if kind == b'5' { 0o755 } else { 0o644 });
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h
}

/// Set the header's checksum.
fn seal(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// PAX records as an `x` member's data.
fn pax_data(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        out.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    out
}

impl RawTar {
    /// A header block made by hand (sealed here), then `data` padded to a block.
    fn block(mut self, mut h: [u8; 512], data: &[u8]) -> Self {
        seal(&mut h);
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// `kind`: b'0' file, b'1' hard link, b'2' symlink, b'5' dir. `declared` overrides the size.
    fn entry(
        mut self,
        name: &str,
        kind: u8,
        data: &[u8],
        link: &str,
        declared: Option<u64>,
    ) -> Self {
        let mut h = header(name, kind, declared.unwrap_or(data.len() as u64), link);
        seal(&mut h);
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, b'0', data, "", None)
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, b'5', b"", "", None)
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, b'2', b"", target, None)
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, b'1', b"", target, None)
    }
    fn end(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

fn sha(data: &[u8]) -> String {
    husk_images::digest::sha256_of(data)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One layer of a test image: the blob as stored and the tar it should decompress to.
struct Layer {
    media: &'static str,
    blob: Vec<u8>,
    diff: Vec<u8>,
}

fn plain(tar: Vec<u8>) -> Layer {
    Layer {
        media: TAR,
        blob: tar.clone(),
        diff: tar,
    }
}

fn gz(tar: Vec<u8>) -> Layer {
    Layer {
        media: GZIP,
        blob: gzip(&tar),
        diff: tar,
    }
}

/// Write an OCI layout with these layers; `tweak` may edit the manifest and config before
/// they are stored (and hashed), `after` may damage the written layout.
fn layout(dir: &Path, layers: &[Layer], tweak: impl FnOnce(&mut Value, &mut Value)) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        descs.push(json!({ "mediaType": l.media, "digest": put(&l.blob), "size": l.blob.len() }));
        diff_ids.push(sha(&l.diff));
    }
    let mut config = json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {},
        "layers": descs,
    });
    let cfg = config.to_string();
    manifest["config"] = json!({
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": sha(cfg.as_bytes()), "size": cfg.len(),
    });
    tweak(&mut manifest, &mut config);
    let cfg = config.to_string();
    if manifest["config"]["digest"] == json!(sha(b"")) {
        // a tweak asked for the config to be rehashed
        manifest["config"]["digest"] = json!(sha(cfg.as_bytes()));
        manifest["config"]["size"] = json!(cfg.len());
    }
    put(cfg.as_bytes());
    let m = manifest.to_string();
    let md = put(m.as_bytes());
    let index = json!({ "schemaVersion": 2, "manifests": [
        { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
          "annotations": { "org.opencontainers.image.ref.name": "latest" } } ] });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn opts() -> UnpackOptions {
    UnpackOptions {
        default_spec: json!({ "ociVersion": "1.0.2", "process": { "env": ["PATH=/bin"] } }),
        args: None,
        terminal: false,
        chown: None,
        bounds: husk_images::Bounds::default(),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A scratch directory laid out as `image/`, `outside/victim`, and the bundle target `bundle/`
/// (symlinks in the corpus aim at `../../outside` from the rootfs).
struct Scene {
    t: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("outside")).unwrap();
        fs::write(t.path().join("outside/victim"), "victim").unwrap();
        Scene { t }
    }
    fn image(&self) -> PathBuf {
        self.t.path().join("image")
    }
    fn bundle(&self) -> PathBuf {
        self.t.path().join("bundle")
    }
    fn unpack(&self) -> Result<Unpacked, String> {
        let img = husk_images::open(self.image().to_str().unwrap()).map_err(|e| chain(&e))?;
        husk_images::unpack(&img, &self.bundle(), &opts()).map_err(|e| chain(&e))
    }
    /// Unpacking fails with a message containing `want`; nothing outside changed; no bundle.
    fn refused(&self, want: &[&str]) -> String {
        let err = match self.unpack() {
            Ok(_) => panic!("unpack succeeded; expected an error with {want:?}"),
            Err(e) => e,
        };
        for w in want {
            assert!(err.contains(w), "error {err:?} does not mention {w:?}");
        }
        let outside: Vec<_> = fs::read_dir(self.t.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            outside,
            ["victim"],
            "something was written outside: {outside:?}"
        );
        assert_eq!(
            fs::read_to_string(self.t.path().join("outside/victim")).unwrap(),
            "victim"
        );
        let top: Vec<_> = fs::read_dir(self.t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "image" && n != "outside")
            .collect();
        assert!(top.is_empty(), "left behind: {top:?}");
        println!("refused as expected: {err}");
        err
    }
}

fn base() -> RawTar {
    RawTar::default()
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
}

#[test]
fn control_a_good_image_unpacks() {
    let s = Scene::new();
    layout(
        &s.image(),
        &[gz(base().symlink("lnk", "etc").end())],
        |_, _| {},
    );
    s.unpack().unwrap();
    assert!(s.bundle().join("rootfs/lnk/passwd").exists());
    assert!(s.bundle().join("config.json").exists());
}

#[test]
fn h01_path_traversal() {
    let s = Scene::new();
    layout(
        &s.image(),
        &[plain(base().file("../../outside/pwned", b"x").end())],
        |_, _| {},
    );
    s.refused(&["../../outside/pwned", "\"..\" component"]);
}

#[test]
fn h02_traversal_inside_a_name() {
    let s = Scene::new();
    layout(
        &s.image(),
        &[gz(base().file("etc/../../../outside/pwned", b"x").end())],
        |_, _| {},
    );
    s.refused(&["\"..\" component"]);
}

#[test]
fn h03_absolute_path_is_rerooted() {
    // As Go's archive/tar users (containerd, umoci): "/x" is "x" in the rootfs.
    let s = Scene::new();
    let abs = format!("{}/outside/pwned", s.t.path().display());
    layout(&s.image(), &[gz(base().file(&abs, b"x").end())], |_, _| {});
    s.unpack().unwrap();
    assert!(!s.t.path().join("outside/pwned").exists());
    let inside = s.bundle().join("rootfs").join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"x");
}

#[test]
fn h03b_rooted_dotdot_stays_at_the_root() {
    // "/../../x" is "/x" (Go's path.Clean, as containerd): inside the rootfs.
    let s = Scene::new();
    let tar = base().file("/../../outside/pwned", b"x").end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.unpack().unwrap();
    assert!(!s.t.path().join("outside/pwned").exists());
    assert_eq!(
        fs::read(s.bundle().join("rootfs/outside/pwned")).unwrap(),
        b"x"
    );
}

#[test]
fn h04_symlink_parent_escape() {
    let s = Scene::new();
    let tar = base()
        .symlink("up", "../../outside")
        .file("up/pwned", b"x")
        .end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["up/pwned", "symlink \"up\"", "leads out of the rootfs"]);
}

#[test]
fn h05_symlink_parent_escape_across_layers() {
    let s = Scene::new();
    let l1 = base().symlink("etc/up", "../../../outside").end();
    let l2 = RawTar::default().file("etc/up/pwned", b"x").end();
    layout(&s.image(), &[gz(l1), gz(l2)], |_, _| {});
    s.refused(&["layer 1", "etc/up/pwned", "leads out of the rootfs"]);
}

#[test]
fn h06_hard_link_escape() {
    let s = Scene::new();
    let tar = base().hardlink("stolen", "../../outside/victim").end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["hard link target", "\"..\" component"]);
}

#[test]
fn h07_hard_link_through_escaping_symlink() {
    let s = Scene::new();
    let tar = base()
        .symlink("up", "../..")
        .hardlink("stolen", "up/outside/victim")
        .end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["hard link target", "leads out of the rootfs"]);
}

#[test]
fn h08_whiteout_escape() {
    let s = Scene::new();
    let l2 = RawTar::default()
        .file("../../outside/.wh.victim", b"")
        .end();
    layout(&s.image(), &[gz(base().end()), gz(l2)], |_, _| {});
    s.refused(&["\"..\" component"]);
}

#[test]
fn h09_whiteout_through_escaping_symlink() {
    let s = Scene::new();
    let l1 = base().symlink("up", "../../outside").end();
    let l2 = RawTar::default().file("up/.wh.victim", b"").end();
    layout(&s.image(), &[gz(l1), gz(l2)], |_, _| {});
    s.refused(&["up/.wh.victim", "leads out of the rootfs"]);
}

#[test]
fn h10_whiteout_of_dotdot() {
    let s = Scene::new();
    let l2 = RawTar::default().file("etc/.wh..", b"").end();
    layout(&s.image(), &[gz(base().end()), gz(l2)], |_, _| {});
    s.refused(&["whiteout", "names no file"]);
}

#[test]
fn h11_digest_mismatch() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |_, _| {});
    // Damage the stored layer blob, keeping its size.
    let img = husk_images::open(s.image().to_str().unwrap()).unwrap();
    let d = img.layers[0].digest.clone().unwrap();
    let p = s.image().join("blobs/sha256").join(d.digest());
    let mut b = fs::read(&p).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    fs::write(&p, b).unwrap();
    s.refused(&["layer 0", "verify the blob", "digest mismatch"]);
}

#[test]
fn h12_size_mismatch() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |m, _| {
        let n = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = json!(n - 1);
    });
    s.refused(&["size mismatch"]);
}

#[test]
fn h13_truncated_gzip() {
    let s = Scene::new();
    let tar = base().file("big", &vec![7u8; 200_000]).end();
    let mut blob = gzip(&tar);
    blob.truncate(blob.len() / 2);
    layout(
        &s.image(),
        &[Layer {
            media: GZIP,
            blob,
            diff: tar,
        }],
        |_, _| {},
    );
    s.refused(&["layer 0", "decompress the layer"]);
}

#[test]
fn h14_bad_zstd() {
    let s = Scene::new();
    let tar = base().end();
    let blob = b"(\xb5/\xfd this is not zstd at all".to_vec();
    layout(
        &s.image(),
        &[Layer {
            media: ZSTD,
            blob,
            diff: tar,
        }],
        |_, _| {},
    );
    s.refused(&["decompress the layer (Zstd)"]);
}

#[test]
fn h15_missing_blob() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |m, _| {
        m["layers"][0]["digest"] = json!(sha(b"not stored anywhere"));
    });
    s.refused(&["is missing from"]);
}

#[test]
fn h16_manifest_points_at_missing_config() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |m, _| {
        m["config"]["digest"] = json!(sha(b"no such config"));
    });
    s.refused(&["config sha256:", "is missing from"]);
}

#[test]
fn h17_bomb_with_a_huge_declared_entry_size() {
    let s = Scene::new();
    // The header claims 8 GB; the stream holds 1 KiB.
    let mut tar = base()
        .entry("bomb", b'0', &[1u8; 1024], "", Some(8_000_000_000))
        .0;
    tar.extend(std::iter::repeat_n(0u8, 1024));
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["bomb", "7999997952 of its 8000000000 bytes are missing"]);
}

#[test]
fn h18_bomb_with_a_huge_declared_blob_size() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |m, _| {
        m["layers"][0]["size"] = json!(1u64 << 40);
    });
    s.refused(&["size mismatch", "1099511627776"]);
}

#[test]
fn h19_config_declared_huge() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |m, _| {
        m["config"]["size"] = json!(1u64 << 33);
    });
    s.refused(&["more than the", "JSON document"]);
}

#[test]
fn h20_diff_id_mismatch() {
    let s = Scene::new();
    let tar = base().end();
    let other = base().file("extra", b"e").end();
    layout(
        &s.image(),
        &[Layer {
            media: GZIP,
            blob: gzip(&tar),
            diff: other,
        }],
        |_, _| {},
    );
    s.refused(&["diff_id", "digest mismatch"]);
}

#[test]
fn h21_decompression_bomb_over_the_limit() {
    let s = Scene::new();
    let tar = base().file("zeros", &vec![0u8; 4 << 20]).end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    let img = husk_images::open(s.image().to_str().unwrap()).unwrap();
    let mut o = opts();
    o.bounds.bytes = Some(1 << 20);
    let e = husk_images::unpack(&img, &s.bundle(), &o).unwrap_err();
    assert!(chain(&e).contains("size bound"), "{}", chain(&e));
    assert!(!s.bundle().exists());
}

#[test]
fn h22_failed_unpack_into_an_existing_bundle_keeps_it_empty() {
    let s = Scene::new();
    fs::create_dir(s.bundle()).unwrap();
    layout(
        &s.image(),
        &[gz(base().file("../x", b"x").end())],
        |_, _| {},
    );
    assert!(s.unpack().is_err());
    assert_eq!(fs::read_dir(s.bundle()).unwrap().count(), 0);
}

#[test]
fn h23_unsupported_digest_algorithm() {
    let s = Scene::new();
    layout(&s.image(), &[gz(base().end())], |m, _| {
        m["layers"][0]["digest"] = json!("md5:0123456789abcdef0123456789abcdef");
    });
    s.refused(&["unsupported digest algorithm"]);
}

/// A docker-archive as podman writes it: the config named by its digest, layers named by their
/// diff_ids, referenced through `<id>/layer.tar` symlinks; layer 2 gzipped (docker-archives
/// do not declare compression).
fn docker_archive(path: &Path, damage_config: bool) {
    let l1 = base().file("etc/motd", b"one\n").end();
    let l2 = RawTar::default()
        .file("etc/.wh.motd", b"")
        .file("etc/new", b"two\n")
        .end();
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": [sha(&l1), sha(&l2)] },
    })
    .to_string();
    let hex = |d: String| d.trim_start_matches("sha256:").to_string();
    let cfg_name = format!("{}.json", hex(sha(config.as_bytes())));
    let manifest = json!([{ "Config": cfg_name, "RepoTags": ["localhost/dock:latest"],
        "Layers": [format!("{}.tar", hex(sha(&l1))), "abc/layer.tar"] }])
    .to_string();
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", manifest.as_bytes());
    let cfg_data = if damage_config {
        config.replace("true", "fals")
    } else {
        config.clone()
    };
    add(&cfg_name, cfg_data.as_bytes());
    add(&format!("{}.tar", hex(sha(&l1))), &l1);
    let l2name = format!("{}.tar", hex(sha(&l2)));
    add(&l2name, &gzip(&l2));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_mtime(0);
    b.append_link(&mut h, "abc/layer.tar", format!("../{l2name}"))
        .unwrap();
    b.finish().unwrap();
}

#[test]
fn control_a_docker_archive_unpacks() {
    let s = Scene::new();
    let a = s.t.path().join("image");
    docker_archive(&a, false);
    let img = husk_images::open(&format!("{}:dock", a.display())).unwrap();
    husk_images::unpack(&img, &s.bundle(), &opts()).unwrap();
    let r = s.bundle().join("rootfs");
    assert!(!r.join("etc/motd").exists());
    assert_eq!(fs::read(r.join("etc/new")).unwrap(), b"two\n");
}

#[test]
fn h24_docker_archive_config_does_not_match_its_name() {
    let s = Scene::new();
    docker_archive(&s.image(), true);
    s.refused(&["verify", "digest mismatch"]);
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).unwrap()
}

#[test]
fn h25_zstd_zero_bomb_stops_at_the_default_bound() {
    // A 10 GiB file of zeros in a layer of a few hundred KB: zstd frames concatenated (a valid
    // zstd stream), one 64 MiB frame of zeros repeated. The diff_id is not that of the 10 GiB
    // tar (hashing it would take minutes): the bound must stop the unpack before it matters.
    let s = Scene::new();
    const GIB: u64 = 1 << 30;
    let head = base().entry("zeros", b'0', b"", "", Some(10 * GIB)).0;
    let head = &head[..]; // the header only: the data follows in the frames below
    let mut blob = zstd_frame(head);
    let zeros = zstd_frame(&vec![0u8; 64 << 20]);
    for _ in 0..160 {
        blob.extend_from_slice(&zeros);
    }
    blob.extend_from_slice(&zstd_frame(&[0u8; 1024]));
    assert!(blob.len() < 1 << 20, "the bomb is {} bytes", blob.len());
    layout(
        &s.image(),
        &[Layer {
            media: ZSTD,
            blob,
            diff: head.to_vec(),
        }],
        |_, _| {},
    );
    s.refused(&["\"zeros\"", "size bound of 8589934592 bytes (8.0 GiB)"]);
}

#[test]
fn h26_a_hundred_thousand_empty_files_stop_at_the_default_bound() {
    let s = Scene::new();
    let mut t = RawTar::default();
    for d in 0..100 {
        t = t.dir(&format!("d{d:03}/"));
        for f in 0..1000 {
            t = t.file(&format!("d{d:03}/{f:04}"), b"");
        }
    }
    layout(&s.image(), &[gz(t.end())], |_, _| {});
    s.refused(&["bound of 90000 entries"]);
}

#[test]
fn h27_gnu_sparse_bomb_stops_at_the_default_bound() {
    // An old-GNU sparse file of 10 GiB whose one fragment of 512 bytes is at its end: a 2 KB
    // tar. Holes or not, the file's size counts.
    let s = Scene::new();
    let mut h = header("sparse", b'S', 512, "");
    h[257..265].copy_from_slice(b"ustar  \0");
    octal(&mut h[386..398], (10u64 << 30) - 512);
    octal(&mut h[398..410], 512);
    octal(&mut h[483..495], 10u64 << 30);
    let tar = base().block(h, &[1u8; 512]).end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["\"sparse\"", "size bound"]);
}

#[test]
fn h28_pax_sparse_of_an_unknown_version_is_refused() {
    let s = Scene::new();
    let pax = pax_data(&[
        ("GNU.sparse.major", "2"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "file"),
        ("GNU.sparse.realsize", "100"),
    ]);
    let tar = base()
        .block(header("PaxHeaders/file", b'x', pax.len() as u64, ""), &pax)
        .file("GNUSparseFile.1/file", b"x")
        .end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["unsupported GNU sparse format \"2\".\"0\""]);
}

#[test]
fn h29_a_sparse_map_that_lies_is_refused() {
    // Format 0.1: fragments holding more data than the entry carries.
    let s = Scene::new();
    let pax = pax_data(&[
        ("GNU.sparse.major", "0"),
        ("GNU.sparse.minor", "1"),
        ("GNU.sparse.name", "file"),
        ("GNU.sparse.size", "100"),
        ("GNU.sparse.map", "0,10,50,40"),
    ]);
    let tar = base()
        .block(header("PaxHeaders/file", b'x', pax.len() as u64, ""), &pax)
        .file("GNUSparseFile.1/file", b"only twenty bytes...")
        .end();
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["bad sparse map", "50 bytes but the entry carries 20"]);
}

#[test]
fn h30_not_a_tar_says_what_was_expected() {
    let s = Scene::new();
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(8192, 0x41);
    layout(&s.image(), &[gz(elf)], |_, _| {});
    s.refused(&["not a tar archive", "an ELF executable"]);
}

#[test]
fn h31_a_stream_cut_inside_data_is_an_error() {
    let s = Scene::new();
    let mut tar = base().file("f", &[5u8; 1000]).0;
    tar.truncate(tar.len() - 24 - 500); // 24 padding bytes, then 500 of the data
    layout(&s.image(), &[gz(tar)], |_, _| {});
    s.refused(&["\"f\"", "500 of its 1000 bytes are missing"]);
}

#[test]
fn control_a_layer_without_padding_or_end_blocks_unpacks() {
    // As umoci 0.4.7 writes some layers: the stream stops right after the last file's data.
    let s = Scene::new();
    let mut tar = base().file("last", b"tail").0;
    tar.truncate(tar.len() - 508);
    layout(&s.image(), &[plain(tar.clone()), gz(tar)], |_, _| {});
    s.unpack().unwrap();
    assert_eq!(fs::read(s.bundle().join("rootfs/last")).unwrap(), b"tail");
}

#[test]
fn h32_an_image_that_is_not_an_archive_says_what_was_expected() {
    let s = Scene::new();
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(4096, 0);
    fs::write(s.image(), elf).unwrap();
    let e = match husk_images::open(s.image().to_str().unwrap()) {
        Ok(_) => panic!("an ELF file opened as an image"),
        Err(e) => chain(&e),
    };
    for want in [
        "oci-archive or a docker-archive",
        "not a tar archive",
        "ELF",
    ] {
        assert!(e.contains(want), "{e:?} does not mention {want:?}");
    }
}
