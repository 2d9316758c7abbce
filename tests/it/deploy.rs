//! The files in deploy/ are well-formed, and the permission documents grant
//! what lethe needs and nothing that changes bucket settings.

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/deploy/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn aws_policy_grants_exactly_list_get_delete_versioning_and_certificate_writes() {
    let doc: serde_json::Value =
        serde_json::from_str(&read("permissions/aws-iam-policy.json")).unwrap();
    let mut actions: Vec<String> = Vec::new();
    for statement in doc["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            serde_json::Value::String(a) => actions.push(a.clone()),
            serde_json::Value::Array(a) => {
                actions.extend(a.iter().map(|v| v.as_str().unwrap().to_string()))
            }
            other => panic!("unexpected Action {other}"),
        }
        if statement["Action"] == "s3:ListBucket" {
            assert!(
                statement["Condition"]["StringLike"]["s3:prefix"].is_array(),
                "listing is prefix-scoped"
            );
        }
    }
    actions.sort();
    actions.dedup();
    assert_eq!(
        actions,
        [
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:GetBucketVersioning",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject"
        ]
    );
}

#[test]
fn azure_role_has_only_blob_data_actions() {
    let doc: serde_json::Value =
        serde_json::from_str(&read("permissions/azure-role.json")).unwrap();
    assert!(
        doc["Actions"].as_array().unwrap().is_empty(),
        "no control-plane actions"
    );
    for action in doc["DataActions"].as_array().unwrap() {
        assert!(
            action
                .as_str()
                .unwrap()
                .starts_with("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/"),
            "{action}"
        );
    }
}

#[test]
fn deploy_config_is_a_valid_lethe_config() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/lethe.toml");
    lethe::config::Settings::load(&path, &Default::default()).unwrap();
}
