//! The public conformance vectors (tests/data, Apache-2.0, see its README):
//! RFC 8785 canonical JSON and RFC 6962 Merkle inclusion proofs.

use std::path::PathBuf;

use base64::Engine;
use lethe::certificate::{jcs, merkle};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

#[test]
fn rfc8785_vectors() {
    let mut checked = 0;
    for entry in std::fs::read_dir(data("jcs/input")).unwrap() {
        let input = entry.unwrap().path();
        let name = input.file_name().unwrap().to_owned();
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap();
        let expected = std::fs::read(data("jcs/output").join(&name)).unwrap();
        let got = jcs::value_to_vec(&value);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{name:?}"
        );
        // The direct path (typed values are written without a `Value`) on
        // the same vectors: `Value` serializes through it member by member.
        let direct = jcs::to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&expected),
            "{name:?}, written directly"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn rfc6962_inclusion_vectors() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut accepted, mut rejected) = (0, 0);
    let mut files = Vec::new();
    let mut dirs = vec![data("merkle/inclusion")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path)
            } else {
                files.push(path)
            }
        }
    }
    for path in files {
        {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let decode =
                |x: &serde_json::Value| b64.decode(x.as_str().unwrap_or_default()).unwrap();
            let proof: Vec<Vec<u8>> = v["proof"]
                .as_array()
                .map(|a| a.iter().map(decode).collect())
                .unwrap_or_default();
            let result = merkle::verify_inclusion_bytes(
                v["leafIdx"].as_u64().unwrap(),
                v["treeSize"].as_u64().unwrap(),
                &decode(&v["leafHash"]),
                &proof,
                &decode(&v["root"]),
            );
            let want_err = v["wantErr"].as_bool().unwrap();
            assert_eq!(
                result.is_err(),
                want_err,
                "{}: {:?}",
                path.display(),
                result
            );
            if want_err {
                rejected += 1
            } else {
                accepted += 1
            }
        }
    }
    assert!(
        accepted >= 4 && rejected >= 40,
        "{accepted} accepted, {rejected} rejected"
    );
}
