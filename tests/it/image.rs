//! The container image (Dockerfile) cannot be built here; what it ships can
//! be checked: the binary this build produces, for the same target, needs no
//! library beyond what `gcr.io/distroless/cc-debian12` carries (glibc, libm,
//! libgcc_s: no OpenSSL, no zlib), no glibc newer than Debian 12's, and runs
//! with an empty environment.

use std::collections::BTreeSet;

fn readelf(args: &[&str]) -> String {
    let out = std::process::Command::new("readelf")
        .args(args)
        .arg(env!("CARGO_BIN_EXE_lethe"))
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// What distroless/cc-debian12 provides (glibc 2.36 and libgcc).
const IMAGE_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
];

#[test]
fn the_binary_needs_only_what_the_distroless_cc_image_has() {
    let needed: BTreeSet<String> = readelf(&["-d", "-W"])
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_string()))
        .collect();
    assert!(needed.contains("libc.so.6"), "{needed:?}");
    let extra: Vec<&String> = needed
        .iter()
        .filter(|n| !IMAGE_LIBRARIES.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "libraries the image does not have: {extra:?}"
    );
    // glibc symbol versions: none newer than Debian 12's 2.36.
    let newest = readelf(&["--dyn-syms", "-W"])
        .split("GLIBC_")
        .skip(1)
        .filter_map(|v| {
            let v: String = v
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .max()
        .unwrap();
    assert!(newest <= (2, 36), "needs GLIBC_{}.{}", newest.0, newest.1);
}

#[test]
fn the_dockerfile_builds_with_rustls_on_debian_12_and_runs_as_nonroot_without_a_shell() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].contains("-bookworm"),
        "build on Debian 12: {}",
        froms[0]
    );
    assert!(
        froms[1].contains("distroless/cc-debian12") && froms[1].ends_with(":nonroot"),
        "{}",
        froms[1]
    );
    assert!(text.contains("\nUSER 65532:65532\n"));
    assert!(text.contains("--locked"));
    assert!(
        text.contains("ENTRYPOINT [\"/usr/local/bin/lethe\"]"),
        "exec form: no shell in the image"
    );
    assert!(
        !text.contains("--features"),
        "the features tested are the features shipped"
    );
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    assert!(!manifest.contains("native-tls") && !manifest.contains("openssl"));
}

#[test]
fn the_binary_runs_with_an_empty_environment() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
        .arg("--version")
        .env_clear()
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lethe "));
}
