//! `husk image unpack` against `umoci unpack` on an image built offline by podman: a busybox
//! rootfs imported as layer 1, then a `podman build` layer that deletes, replaces and re-owns
//! files (whiteouts, an opaque directory, a dir replaced by a file and back, hard links). Saved as
//! oci-archive and docker-archive, both unpack (and the OCI layout with a :REF) to exactly umoci's
//! tree — paths, types, modes, owners, link targets, device numbers, hard-link structure and
//! contents — and the bundle runs under `husk run`.
//!
//! Podman gets its own storage under a temp dir (removed, with its mounts, at the end) and builds
//! with `--isolation chroot`, so the build itself needs no OCI runtime, cgroup or network.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{mounts_under, Case, Out};
use serde_json::{json, Value};

const IMAGE: &str = "localhost/husk-images-diff:latest";
const ENGINE_TIMEOUT: Duration = Duration::from_secs(300);

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Podman with private storage under `dir`; dropping it removes the images, the mounts podman
/// left under `dir`, and `dir`.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn cmd(&self) -> Command {
        let d = &self.dir;
        let mut c = Command::new("podman");
        c.arg("--root").arg(d.join("root"));
        c.arg("--runroot").arg(d.join("runroot"));
        c.arg("--tmpdir").arg(d.join("tmp"));
        c.args([
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
        ]);
        c.args(["--events-backend", "file", "--network-backend", "netavark"]);
        c.arg("--network-config-dir").arg(d.join("net"));
        c
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        for m in mounts_under(&self.dir).iter().rev() {
            if let Ok(c) = std::ffi::CString::new(m.as_str()) {
                // SAFETY: c is a valid NUL-terminated path; detaching a mount under our temp dir.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn run(case: &Case, mut cmd: Command, what: &str) -> Out {
    cmd.current_dir(&case.dir);
    case.spawn_cmd(cmd, what).wait(ENGINE_TIMEOUT).check()
}

/// One node of a tree, everything but times.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    target: Option<PathBuf>,
    rdev: u64,
    nlink: u64,
    size: u64,
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let p = root.join(rel);
    let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    };
    out.insert(
        rel.to_path_buf(),
        Node {
            kind,
            mode: md.permissions().mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
            rdev: md.rdev(),
            nlink: if ft.is_dir() { 0 } else { md.nlink() },
            size: if ft.is_file() { md.len() } else { 0 },
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

/// Every difference between two trees (metadata, then file contents), as readable lines.
fn differences(want: &Path, got: &Path) -> Vec<String> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    walk(want, Path::new(""), &mut a);
    walk(got, Path::new(""), &mut b);
    let mut diffs = Vec::new();
    for (p, n) in &a {
        match b.get(p) {
            None => diffs.push(format!("missing {p:?}: {n:?}")),
            Some(m) if m != n => diffs.push(format!("{p:?}: umoci {n:?}, husk {m:?}")),
            Some(_) if n.kind == 'f' => {
                if fs::read(want.join(p)).ok() != fs::read(got.join(p)).ok() {
                    diffs.push(format!("{p:?}: contents differ"));
                }
            }
            Some(_) => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("extra {p:?}: {:?}", b[p]));
    }
    diffs
}

/// The busybox rootfs of layer 1, with the kinds of files a real image has.
fn extend_base(r: &Path) {
    use std::os::unix::fs::symlink;
    let w = |p: &str, s: &str, mode: u32| {
        fs::write(r.join(p), s).unwrap();
        fs::set_permissions(r.join(p), fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in [
        "usr/share/doc/pkg",
        "usr/share/doc/pkg2/sub",
        "opt/d/sub",
        "home/user",
        "private",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    w("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600);
    w("etc/motd", "original\n", 0o644);
    w("usr/share/doc/pkg/README", "doc\n", 0o644);
    w("usr/share/doc/pkg2/sub/x", "x\n", 0o444);
    w("opt/d/sub/y", "y\n", 0o644);
    w("opt/f", "f\n", 0o644);
    w("usr/bin/suid-tool", "#!/bin/sh\necho suid\n", 0o4755);
    w("home/user/notes", "mine\n", 0o640);
    fs::set_permissions(r.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(r.join("home/user"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(r.join("home/user/notes"), Some(1000), Some(100)).unwrap();
    fs::hard_link(r.join("etc/motd"), r.join("etc/motd.link")).unwrap();
    symlink("/etc/passwd", r.join("opt/abs-link")).unwrap();
    symlink("../etc/shadow", r.join("opt/rel-link")).unwrap();
    symlink("/nowhere/at/all", r.join("opt/dangling")).unwrap();
    let long = format!("opt/{}/{}", "l".repeat(90), "n".repeat(80));
    fs::create_dir_all(r.join(&long)).unwrap();
    w(&format!("{long}/file-with-a-long-path"), "long\n", 0o644);
    let fifo = std::ffi::CString::new(r.join("run/fifo").to_str().unwrap()).unwrap();
    // SAFETY: fifo is a valid NUL-terminated path inside the test's own temp dir.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o620) }, 0);
    let null = std::ffi::CString::new(r.join("dev/null").to_str().unwrap()).unwrap();
    // SAFETY: null is a valid NUL-terminated path inside the test's own temp dir.
    let made = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod dev/null");
}

const CONTAINERFILE: &str = r#"FROM localhost/husk-images-diff-base:latest
RUN set -e; rm /etc/group; echo 'root:x:0:' > /etc/group2; \
    rm -rf /usr/share/doc; mkdir -p /usr/share/doc/new; echo new > /usr/share/doc/new/README; \
    echo replaced > /etc/motd; chmod 0640 /etc/motd; chown 1000:1000 /etc/motd; \
    ln /etc/motd /etc/motd.hard; rm /bin/ls; ln -s busybox /bin/ls2; \
    rm -rf /tmp; mkdir -m 1777 /tmp; mkdir /data; chown 1000:1000 /data; \
    echo x > /data/f; chmod 4755 /data/f; \
    rm -rf /opt/d; echo now-a-file > /opt/d; rm /opt/f; mkdir /opt/f; echo in > /opt/f/in; \
    rm /opt/dangling; ln -s /etc/passwd /opt/dangling; chmod 0750 /private
USER 1000
WORKDIR /data
ENV GREETING=hello
CMD ["sh", "-c", "echo $GREETING from the image; id -u; pwd; cat /etc/motd"]
"#;

#[test]
fn unpack_matches_umoci_and_runs() {
    let Some(case) = Case::new("images-diff") else {
        return;
    };
    if common::is_runc(&case.bin) {
        println!("SKIP: `husk image` is husk's own; the binary under test is runc");
        return;
    }
    for tool in ["podman", "umoci"] {
        if !have(tool) {
            println!("SKIP: {tool} is not installed (scripts/setup installs it)");
            return;
        }
    }
    let husk = case.bin.clone();
    let d = |n: &str| case.dir.join(n);
    let podman = Podman { dir: d("podman") };

    // Layer 1: `podman import` of a busybox rootfs.
    let base = d("base");
    common::make_rootfs(&base);
    extend_base(&base);
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "-C"])
        .arg(&base)
        .args(["-cf"])
        .arg(d("base.tar"))
        .arg(".");
    run(&case, tar, "tar the base rootfs");
    let mut c = podman.cmd();
    c.args(["import", "--change", r#"CMD ["/bin/sh"]"#]);
    c.arg(d("base.tar"))
        .arg("localhost/husk-images-diff-base:latest");
    run(&case, c, "podman import");

    // Layer 2: a build that deletes, replaces and re-owns.
    fs::create_dir(d("ctx")).unwrap();
    fs::write(d("ctx/Containerfile"), CONTAINERFILE).unwrap();
    let mut c = podman.cmd();
    c.args(["build", "--isolation", "chroot", "-t", IMAGE])
        .arg(d("ctx"));
    run(&case, c, "podman build");
    for (format, file) in [
        ("oci-archive", "img-oci.tar"),
        ("docker-archive", "img-docker.tar"),
    ] {
        let mut c = podman.cmd();
        c.args(["save", "--format", format, "-o"])
            .arg(d(file))
            .arg(IMAGE);
        run(&case, c, &format!("podman save {format}"));
    }

    // The reference: umoci on the OCI layout inside the oci-archive.
    fs::create_dir(d("layout")).unwrap();
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(d("layout"))
        .arg("-xf")
        .arg(d("img-oci.tar"));
    run(&case, c, "extract the oci-archive");
    let mut c = Command::new("umoci");
    c.args(["unpack", "--image"]);
    c.arg(format!("{}:{IMAGE}", d("layout").display()))
        .arg(d("umoci"));
    run(&case, c, "umoci unpack");

    // The image is what this test means it to be (so "identical" says something).
    let mut tree = BTreeMap::new();
    walk(&d("umoci/rootfs"), Path::new(""), &mut tree);
    let at = |p: &str| tree.get(Path::new(p));
    assert!(at("etc/group").is_none() && at("usr/share/doc/pkg").is_none());
    assert_eq!(at("opt/d").map(|n| n.kind), Some('f'));
    assert_eq!(at("opt/f/in").map(|n| n.kind), Some('f'));
    assert_eq!(
        at("dev/null").map(|n| (n.kind, n.rdev)),
        Some(('c', libc::makedev(1, 3)))
    );
    assert_eq!(at("run/fifo").map(|n| n.kind), Some('p'));
    assert_eq!(
        at("etc/motd.hard").map(|n| (n.nlink, n.uid)),
        Some((2, 1000))
    );
    assert_eq!(at("data/f").map(|n| n.mode), Some(0o4755));
    assert!(tree.len() > 300, "only {} entries", tree.len());

    let sources = [
        ("oci-archive", d("img-oci.tar").display().to_string()),
        ("docker-archive", d("img-docker.tar").display().to_string()),
        ("oci-layout", format!("{}:{IMAGE}", d("layout").display())),
    ];
    for (name, src) in &sources {
        let bundle = d(&format!("husk-{name}"));
        let mut c = Command::new(&husk);
        c.args(["image", "unpack", src]).arg(&bundle);
        run(&case, c, &format!("husk image unpack {name}"));
        let diffs = differences(&d("umoci/rootfs"), &bundle.join("rootfs"));
        assert!(
            diffs.is_empty(),
            "{name}: husk's tree differs from umoci's:\n{}",
            diffs.join("\n")
        );
        println!("{name}: identical to umoci ({} entries)", tree.len());
    }
    // And the comparison does see a difference.
    let motd = d("husk-docker-archive/rootfs/etc/motd");
    fs::set_permissions(&motd, fs::Permissions::from_mode(0o600)).unwrap();
    let diffs = differences(&d("umoci/rootfs"), &d("husk-docker-archive/rootfs"));
    assert_eq!(diffs.len(), 2, "{diffs:?}"); // motd and its hard link

    // The spec follows the image config; the bundle runs.
    let bundle = d("husk-oci-archive");
    let mut config: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let p = &config["process"];
    assert_eq!(
        p["args"],
        json!([
            "sh",
            "-c",
            "echo $GREETING from the image; id -u; pwd; cat /etc/motd"
        ])
    );
    assert_eq!(p["user"], json!({ "uid": 1000, "gid": 0 }));
    assert_eq!(p["cwd"], json!("/data"));
    assert!(p["env"]
        .as_array()
        .unwrap()
        .contains(&json!("GREETING=hello")));
    config["linux"]["cgroupsPath"] = json!(case.cgroups_path());
    config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!(format!("{}={}", common::MARK, case.id)));
    fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let mut c = case.command(&["run", "--bundle"]);
    c.arg(&bundle).arg(&case.id);
    let out = run(&case, c, "husk run");
    assert_eq!(out.stdout, "hello from the image\n1000\n/data\nreplaced\n");
    drop(podman);
    case.assert_clean();
}
