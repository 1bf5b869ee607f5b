//! `husk image unpack` against `umoci unpack` on the archives Go-based tools accept and tar
//! libraries disagree on: images made by umoci itself (`umoci insert DIR /`, several layers,
//! whiteouts, an opaque directory) and layers written by Python's tarfile and GNU tar (absolute
//! names, `/`, `.` and `./` root entries, `a/b/../c`, long names in PAX and GNU form, GNU
//! sparse files in the old GNU format and PAX 0.0, 0.1 and 1.0, a layer without padding or end
//! blocks). husk's rootfs must equal umoci's: names, types, modes, owners, sizes, content
//! hashes, link targets. A Cmd-less image gets umoci's default process.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Case, Out};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(300);

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(case: &Case, mut cmd: Command, what: &str) -> Out {
    cmd.current_dir(&case.dir);
    case.spawn_cmd(cmd, what).wait(TIMEOUT).check()
}

/// One node of a tree, everything but times; files by content hash.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    target: Option<PathBuf>,
    size: u64,
    sha256: Option<String>,
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let p = root.join(rel);
    let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    let ft = md.file_type();
    let kind = match () {
        _ if ft.is_dir() => 'd',
        _ if ft.is_symlink() => 'l',
        _ if ft.is_file() => 'f',
        _ if ft.is_char_device() => 'c',
        _ if ft.is_block_device() => 'b',
        _ if ft.is_fifo() => 'p',
        _ => 's',
    };
    out.insert(
        rel.to_path_buf(),
        Node {
            kind,
            mode: md.permissions().mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
            size: if ft.is_file() { md.len() } else { 0 },
            sha256: ft.is_file().then(|| sha256(&p)),
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            walk(root, &rel.join(n), out);
        }
    }
}

fn differences(want: &Path, got: &Path) -> (usize, Vec<String>) {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    walk(want, Path::new(""), &mut a);
    walk(got, Path::new(""), &mut b);
    let mut diffs = Vec::new();
    for (p, n) in &a {
        match b.get(p) {
            None => diffs.push(format!("missing {p:?}: {n:?}")),
            Some(m) if m != n => diffs.push(format!("{p:?}: umoci {n:?}, husk {m:?}")),
            Some(_) => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("extra {p:?}: {:?}", b[p]));
    }
    (a.len(), diffs)
}

/// Builds OCI layouts from tar files: `layout.py OUT CONFIG_JSON TAR...`, and the odd layers:
/// `layers.py DIR` writes DIR/*.tar with Python's tarfile.
const PY: &str = r#"
import hashlib, io, json, os, sys, tarfile

def layout(out, config, tars):
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    def put(b):
        d = hashlib.sha256(b).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(b)
        return {"digest": "sha256:" + d, "size": len(b)}
    layers, diffs = [], []
    for t in tars:
        b = open(t, "rb").read()
        layers.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar", **put(b)))
        diffs.append("sha256:" + hashlib.sha256(b).hexdigest())
    cfg = {"architecture": "amd64", "os": "linux", "config": config,
           "rootfs": {"type": "layers", "diff_ids": diffs}}
    c = put(json.dumps(cfg).encode())
    m = put(json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **c),
        "layers": layers}).encode())
    json.dump({"schemaVersion": 2, "manifests": [dict(
        mediaType="application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": "latest"}, **m)]},
        open(os.path.join(out, "index.json"), "w"))
    json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))

def tar(path, entries, fmt):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, typ, data, mode, uid, link in entries:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = typ, mode, 1700000000, uid, uid
            ti.linkname = link
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
    data = b.getvalue()
    open(path, "wb").write(data)
    return data

F, D, L, S = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE

def layers(d):
    long = "deep/" + "x" * 120 + "/" + "y" * 120
    tar(os.path.join(d, "1-names.tar"), [
        ("/", D, b"", 0o751, 0, ""),
        ("/abs", D, b"", 0o750, 5, ""),
        ("/abs/file", F, b"absolute\n", 0o640, 5, ""),
        ("./rel", F, b"dot-slash\n", 0o600, 6, ""),
        ("a/b/../c", F, b"inside dotdot\n", 0o644, 0, ""),
        ("a/./d//e", F, b"doubled slashes\n", 0o644, 0, ""),
        ("/../rooted", F, b"rooted dotdot\n", 0o644, 0, ""),
        ("hard", L, b"", 0o640, 5, "/abs/file"),
        ("sym", S, b"", 0o777, 0, "/abs/file"),
        (long, F, b"long pax name\n", 0o644, 7, ""),
        ("etc/passwd", F, b"root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n", 0o644, 0, ""),
    ], tarfile.PAX_FORMAT)
    tar(os.path.join(d, "2-gnu.tar"), [
        ("./", D, b"", 0o755, 0, ""),
        ("gnu/" + "z" * 150, F, b"long gnu name\n", 0o644, 0, ""),
        ("gnu/link-" + "w" * 110, S, b"", 0o777, 0, "t" * 120),
        ("abs/.wh.file", F, b"", 0o644, 0, ""),
        ("deep/.wh..wh..opq", F, b"", 0o644, 0, ""),
        ("deep/new", F, b"after opaque\n", 0o644, 0, ""),
    ], tarfile.GNU_FORMAT)
    # No padding and no end blocks: the stream stops right after the last file's data.
    data = tar(os.path.join(d, "3-noend.tar"), [
        ("noend/one", F, b"1" * 700, 0o644, 0, ""),
        ("noend/last", F, b"the end", 0o644, 0, ""),
    ], tarfile.USTAR_FORMAT)
    cut = data.rfind(b"the end") + len(b"the end")
    open(os.path.join(d, "3-noend.tar"), "wb").write(data[:cut])
    # Cut inside the padding after the last member.
    data = tar(os.path.join(d, "4-shortpad.tar"), [
        ("shortpad", F, b"p" * 10, 0o644, 0, ""),
    ], tarfile.USTAR_FORMAT)
    open(os.path.join(d, "4-shortpad.tar"), "wb").write(data[:512 + 100])

if sys.argv[1] == "layout":
    layout(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:])
else:
    layers(sys.argv[2])
"#;

fn py(case: &Case, args: &[&str]) {
    let mut c = Command::new("python3");
    c.arg(case.dir.join("images.py")).args(args);
    run(case, c, &format!("python3 images.py {}", args[0]));
}

/// A file with holes at 100 KB and 300 KB (SEEK_DATA sees only the data), 400 KB in all.
fn sparse_source(dir: &Path) {
    use std::os::unix::fs::FileExt;
    fs::create_dir_all(dir).unwrap();
    let f = fs::File::create(dir.join("sparse")).unwrap();
    f.write_all_at(&[b'A'; 5000], 100_000).unwrap();
    f.write_all_at(&[b'B'; 10], 300_000).unwrap();
    f.set_len(400_000).unwrap();
}

/// Unpack `image` with umoci and husk; the trees must be equal. Returns husk's bundle.
fn compare(case: &Case, image: &str, name: &str) -> PathBuf {
    let u = case.dir.join(format!("{name}-umoci"));
    let h = case.dir.join(format!("{name}-husk"));
    let mut c = Command::new("umoci");
    c.args(["unpack", "--image", image]).arg(&u);
    run(case, c, &format!("umoci unpack {name}"));
    let mut c = Command::new(&case.bin);
    c.args(["image", "unpack", "--quiet", image]).arg(&h);
    run(case, c, &format!("husk image unpack {name}"));
    let (n, diffs) = differences(&u.join("rootfs"), &h.join("rootfs"));
    assert!(
        diffs.is_empty(),
        "{name}: husk's tree differs from umoci's:\n{}",
        diffs.join("\n")
    );
    println!("{name}: identical to umoci ({n} entries)");
    h
}

#[test]
fn unpacks_what_umoci_unpacks_identically() {
    let Some(case) = Case::new("images-interop") else {
        return;
    };
    if common::is_runc(&case.bin) {
        println!("SKIP: `husk image` is husk's own; the binary under test is runc");
        return;
    }
    for tool in ["umoci", "python3", "tar"] {
        if !have(tool) {
            println!("SKIP: {tool} is not installed (scripts/setup installs it)");
            return;
        }
    }
    let d = |n: &str| case.dir.join(n);
    fs::write(d("images.py"), PY).unwrap();

    // 1. Made by umoci: `insert DIR /` (a "/" root entry), a second layer into a directory,
    //    a whiteout and an opaque replacement.
    let src = d("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/motd"), "hello\n").unwrap();
    fs::create_dir_all(src.join("opt/old")).unwrap();
    fs::write(src.join("opt/old/file"), "old\n").unwrap();
    std::os::unix::fs::symlink("etc/motd", src.join("motd")).unwrap();
    fs::create_dir_all(d("more/sub")).unwrap();
    fs::write(d("more/sub/f"), "more\n").unwrap();
    fs::create_dir_all(d("newopt")).unwrap();
    fs::write(d("newopt/fresh"), "fresh\n").unwrap();
    let umoci = |args: &[&str]| {
        let mut c = Command::new("umoci");
        c.args(args);
        run(&case, c, &format!("umoci {}", args.join(" ")));
    };
    let layout = d("umoci-layout");
    let layout_s = layout.to_str().unwrap().to_string();
    let img = format!("{layout_s}:t");
    umoci(&["init", "--layout", &layout_s]);
    umoci(&["new", "--image", &img]);
    umoci(&["insert", "--image", &img, src.to_str().unwrap(), "/"]);
    umoci(&[
        "insert",
        "--image",
        &img,
        d("more").to_str().unwrap(),
        "/srv/more",
    ]);
    umoci(&["insert", "--image", &img, "--whiteout", "/motd"]);
    umoci(&[
        "insert",
        "--image",
        &img,
        "--opaque",
        d("newopt").to_str().unwrap(),
        "/opt",
    ]);
    let h = compare(&case, &img, "umoci-made");
    assert!(!h.join("rootfs/motd").exists());
    assert!(!h.join("rootfs/opt/old").exists());
    // Cmd-less: umoci's default process, a warning, no TERM without a terminal, HOME "/".
    let config: Value = serde_json::from_slice(&fs::read(h.join("config.json")).unwrap()).unwrap();
    let uconfig: Value =
        serde_json::from_slice(&fs::read(d("umoci-made-umoci/config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], uconfig["process"]["args"]);
    let env: Vec<&str> = config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"HOME=/"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("TERM=")), "{env:?}");
    assert_eq!(config["process"]["terminal"], false);
    assert_eq!(config["hostname"], "container");

    // 2. Odd layers from Python's tarfile and GNU tar's sparse formats.
    fs::create_dir(d("layers")).unwrap();
    py(&case, &["layers", d("layers").to_str().unwrap()]);
    sparse_source(&d("sparse-src"));
    let mut tars: Vec<String> = ["1-names", "2-gnu", "3-noend", "4-shortpad"]
        .iter()
        .map(|n| format!("{}/{n}.tar", d("layers").display()))
        .collect();
    for (i, (format, version)) in [
        ("gnu", None),
        ("pax", Some("0.0")),
        ("pax", Some("0.1")),
        ("pax", Some("1.0")),
    ]
    .into_iter()
    .enumerate()
    {
        // Each in its own directory, so the four layers write four files.
        let dir = format!("sparse{i}");
        let out = format!("{}/5-sparse{i}.tar", d("layers").display());
        let mut c = Command::new("tar");
        c.arg(format!("--format={format}")).arg("--sparse");
        if let Some(v) = version {
            c.arg(format!("--sparse-version={v}"));
        }
        c.args(["--numeric-owner", "--transform"])
            .arg(format!("s,^sparse,{dir}/sparse,"))
            .arg("-C")
            .arg(d("sparse-src"))
            .args(["-cf", &out, "sparse"]);
        run(
            &case,
            c,
            &format!("tar --format={format} --sparse {version:?}"),
        );
        tars.push(out);
    }
    // The PAX sparse layers go with the odd ones; umoci refuses old-GNU sparse entries
    // ("unknown typeflag 'S'"), so that layer is checked against the source file only.
    let gnu_sparse = tars.remove(4);
    let make = |name: &str, config: &str, tars: &[String]| -> String {
        let out = d(name);
        let mut args = vec![
            "layout".to_string(),
            out.to_str().unwrap().to_string(),
            config.to_string(),
        ];
        args.extend(tars.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        py(&case, &args);
        format!("{}:latest", out.display())
    };
    let odd = make(
        "odd-layout",
        r#"{"User": "web", "Cmd": ["/bin/true"]}"#,
        &tars,
    );
    let h = compare(&case, &odd, "odd");
    let r = h.join("rootfs");
    assert_eq!(fs::read(r.join("a/c")).unwrap(), b"inside dotdot\n");
    assert_eq!(fs::read(r.join("hard")).unwrap(), b"absolute\n");
    assert!(!r.join("abs/file").exists());
    assert_eq!(fs::read_dir(r.join("deep")).unwrap().count(), 1);
    assert_eq!(fs::read(r.join("noend/last")).unwrap(), b"the end");
    let want = fs::read(d("sparse-src/sparse")).unwrap();
    let check_sparse = |p: &Path| {
        assert_eq!(fs::read(p).unwrap(), want, "{}", p.display());
        let md = fs::metadata(p).unwrap();
        println!(
            "{}: {} bytes, {} allocated",
            p.display(),
            md.len(),
            md.blocks() * 512
        );
        // 5,010 bytes of data in 400,000: the holes stay holes (tmpfs, ext4, xfs, btrfs).
        assert!(
            md.blocks() * 512 < 100_000,
            "{}: holes were filled",
            p.display()
        );
    };
    for i in 1..4 {
        check_sparse(&r.join(format!("sparse{i}/sparse")));
    }
    let gnu = make(
        "gnu-sparse-layout",
        r#"{"Cmd": ["/bin/true"]}"#,
        &[gnu_sparse],
    );
    let hg = d("gnu-sparse-husk");
    let mut c = Command::new(&case.bin);
    c.args(["image", "unpack", "--quiet", &gnu]).arg(&hg);
    run(&case, c, "husk image unpack gnu-sparse");
    check_sparse(&hg.join("rootfs/sparse0/sparse"));
    let config: Value = serde_json::from_slice(&fs::read(h.join("config.json")).unwrap()).unwrap();
    let env = config["process"]["env"].to_string();
    assert!(env.contains("HOME=/var/www"), "{env}");
}
