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

mod kubernetes {
    //! What the issue asks of every lethe pod in deploy/kubernetes, checked on
    //! the manifests themselves (scripts/k8s/validate checks them against the
    //! Kubernetes schemas).

    use serde_json::Value;

    fn manifest(rel: &str) -> Value {
        serde_saphyr::from_str(&super::read(&format!("kubernetes/{rel}")))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Every workload: (file, the Job spec inside it).
    fn workloads() -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for rel in ["nightly/cronjob.yaml", "sharded/cronjob.yaml"] {
            let m = manifest(rel);
            assert_eq!(m["kind"], "CronJob", "{rel}");
            let spec = &m["spec"];
            assert_eq!(spec["concurrencyPolicy"], "Forbid", "{rel}");
            assert!(
                spec["startingDeadlineSeconds"].as_u64().unwrap() > 0,
                "{rel}"
            );
            assert!(spec["schedule"].is_string() && spec["timeZone"].is_string());
            out.push((rel.to_string(), spec["jobTemplate"]["spec"].clone()));
        }
        let dir = format!("{}/deploy/kubernetes/jobs", env!("CARGO_MANIFEST_DIR"));
        for e in std::fs::read_dir(dir).unwrap() {
            let rel = format!("jobs/{}", e.unwrap().file_name().to_string_lossy());
            let m = manifest(&rel);
            assert_eq!(m["kind"], "Job", "{rel}");
            out.push((rel, m["spec"].clone()));
        }
        assert!(out.len() >= 6, "{}", out.len());
        out
    }

    fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
        container["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)?["value"]
            .as_str()
    }

    fn mount<'a>(container: &'a Value, volume: &str) -> &'a Value {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("no mount of {volume}"))
    }

    #[test]
    fn every_lethe_pod_runs_locked_down_with_its_secrets_read_only() {
        for (rel, job) in workloads() {
            assert!(job["activeDeadlineSeconds"].as_u64().unwrap() > 0, "{rel}");
            assert!(
                job["ttlSecondsAfterFinished"].as_u64().unwrap() > 0,
                "{rel}"
            );
            assert!(
                job["backoffLimit"].is_u64() || job["backoffLimitPerIndex"].is_u64(),
                "{rel}"
            );
            let pod = &job["template"]["spec"];
            assert_eq!(pod["restartPolicy"], "Never", "{rel}");
            assert_eq!(pod["automountServiceAccountToken"], false, "{rel}");
            assert_eq!(pod["serviceAccountName"], "lethe", "{rel}");
            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{rel}");
            assert_ne!(psc["runAsUser"], 0, "{rel}");
            assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{rel}");
            let containers = pod["containers"].as_array().unwrap();
            assert_eq!(containers.len(), 1, "{rel}");
            let c = &containers[0];
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{rel}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{rel}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{rel}"
            );
            for kind in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(c["resources"][kind][r].is_string(), "{rel}: {kind}.{r}");
                }
            }
            // Secrets: mounted read-only, mode 0400, where lethe is told to look.
            let volumes = pod["volumes"].as_array().unwrap();
            let volume = |name: &str| {
                volumes
                    .iter()
                    .find(|v| v["name"] == name)
                    .unwrap_or_else(|| panic!("{rel}: no volume {name}"))
            };
            for (name, var, file) in [
                ("signing-key", "LETHE_SIGNING_KEY", "lethe.key"),
                ("database", "LETHE_DATABASE_FILE", "url"),
            ] {
                let v = volume(name);
                assert_eq!(v["secret"]["defaultMode"], 0o400, "{rel}: {name}");
                let m = mount(c, name);
                assert_eq!(m["readOnly"], true, "{rel}: {name}");
                assert_eq!(
                    env(c, var).unwrap(),
                    format!("{}/{file}", m["mountPath"].as_str().unwrap()),
                    "{rel}: {var}"
                );
            }
            assert!(
                env(c, "LETHE_DATABASE").is_none(),
                "{rel}: no secret in an env value"
            );
            let config = mount(c, "config");
            assert_eq!(config["readOnly"], true);
            assert_eq!(
                env(c, "LETHE_CONFIG").unwrap(),
                format!("{}/lethe.toml", config["mountPath"].as_str().unwrap())
            );
            // A writable /tmp for the plan spool; the root filesystem is read-only.
            assert!(volume("tmp")["emptyDir"].is_object(), "{rel}");
            assert_eq!(mount(c, "tmp")["mountPath"], "/tmp", "{rel}");
        }
    }

    #[test]
    fn the_sharded_job_splits_by_completion_index_into_as_many_shards_as_pods() {
        let m = manifest("sharded/cronjob.yaml");
        let job = &m["spec"]["jobTemplate"]["spec"];
        assert_eq!(job["completionMode"], "Indexed");
        let n = job["completions"].as_u64().unwrap();
        assert_eq!(job["parallelism"].as_u64().unwrap(), n);
        let c = &job["template"]["spec"]["containers"][0];
        assert_eq!(
            env(c, "LETHE_SHARD").unwrap(),
            format!("$(SHARD_INDEX)/{n}")
        );
        let index = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["name"] == "SHARD_INDEX")
            .unwrap();
        let shard = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["name"] == "LETHE_SHARD")
            .unwrap();
        assert!(
            index < shard,
            "$(SHARD_INDEX) expands only if defined before"
        );
        assert_eq!(
            c["env"][index]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        // The value lethe receives parses as a shard.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .args(["run", "--dry-run", "--config", "/nonexistent/lethe.toml"])
            .env("LETHE_SHARD", format!("{}/{n}", n - 1))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("--shard"), "{err}");
    }

    #[test]
    fn the_configmap_is_a_valid_lethe_config_with_the_repository_policy() {
        let m = manifest("base/configmap.yaml");
        let data = m["data"].as_object().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lethe.toml"),
            data["lethe.toml"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        // Every policy key is mounted under policies/ by every workload.
        let items = manifest("nightly/cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]
            ["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "config")
            .unwrap()["configMap"]["items"]
            .clone();
        for (key, text) in data {
            let path = items
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["key"] == key.as_str())
                .unwrap_or_else(|| panic!("ConfigMap key {key} is not mounted"))["path"]
                .as_str()
                .unwrap()
                .to_string();
            if key != "lethe.toml" {
                assert_eq!(path, format!("policies/{key}"));
                std::fs::write(dir.path().join(&path), text.as_str().unwrap()).unwrap();
            }
        }
        assert_eq!(
            data["retention.yaml"].as_str().unwrap(),
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/policies/retention.yaml"
            ))
            .unwrap(),
            "the ConfigMap carries the repository's policy"
        );
        let settings =
            lethe::config::Settings::load(&dir.path().join("lethe.toml"), &Default::default())
                .unwrap();
        assert!(
            settings.database.redacted().starts_with("postgres://"),
            "a shared ledger, never an ephemeral SQLite file in the pod"
        );
        let policy = lethe::policy::Policy::load(&settings.policies_dir).unwrap();
        let names: Vec<&str> = settings.stores.iter().map(|s| s.name.as_str()).collect();
        policy.check_stores(&names).unwrap();
    }
}

/// The daemon's systemd unit, as `systemd-analyze verify` reads it (with this
/// build's binary in ExecStart): no unknown keys, no bad values.
#[test]
fn the_systemd_unit_verifies_and_stops_lethe_the_way_it_stops_cleanly() {
    let unit = read("systemd/lethe.service");
    assert!(unit.contains("\nExecStart=/usr/local/bin/lethe daemon"));
    assert!(unit.contains("\nKillSignal=SIGTERM\n"));
    assert!(unit.contains("\nRestartPreventExitStatus=2\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lethe.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/lethe", env!("CARGO_BIN_EXE_lethe")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// A path in `ReadWritePaths=` that may be missing on a host (a local
/// store's folder) carries systemd's "-" prefix, or the unit fails with
/// 226/NAMESPACE where it is absent; only the StateDirectory may go without.
#[test]
fn the_systemd_unit_starts_on_a_host_without_a_recordings_folder() {
    let unit = read("systemd/lethe.service");
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect()
    };
    let state: Vec<String> = setting("StateDirectory")
        .iter()
        .map(|d| format!("/var/lib/{d}"))
        .collect();
    let paths = setting("ReadWritePaths");
    assert!(
        paths.iter().any(|p| p == "-/var/lib/recordings"),
        "{paths:?}"
    );
    for p in &paths {
        assert!(p.starts_with('-') || state.contains(p), "{p} without '-'");
    }
}

/// The install steps in the unit's header, run as written in a temporary
/// root (every absolute path moved under it; the steps that need a real
/// system user or systemd, `useradd`, `chown` and `systemctl`, left out),
/// give a configuration the daemon starts with: the key keygen writes is the
/// one lethe.toml names, the policies are where it looks, the ledger can be
/// created.
#[test]
fn the_systemd_units_install_steps_followed_as_written_give_a_daemon_that_starts() {
    use std::path::Path;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = read("systemd/lethe.service");
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap().to_string();
    for dir in ["usr/local/bin", "etc/systemd/system", "var/lib"] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    // A checkout with the built binary in ./lethe, as the header assumes.
    let checkout = tempfile::tempdir().unwrap();
    let c = checkout.path();
    std::fs::copy(env!("CARGO_BIN_EXE_lethe"), c.join("lethe")).unwrap();
    std::fs::create_dir_all(c.join("deploy/systemd")).unwrap();
    std::fs::create_dir_all(c.join("policies")).unwrap();
    for rel in ["deploy/lethe.toml", "deploy/systemd/lethe.service"] {
        std::fs::copy(repo.join(rel), c.join(rel)).unwrap();
    }
    for e in std::fs::read_dir(repo.join("policies")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), c.join("policies").join(e.file_name())).unwrap();
    }
    let path = format!(
        "{r}/usr/local/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = Vec::new();
    for line in unit.lines().filter_map(|l| l.strip_prefix("#   ")) {
        for step in line.split(" && ") {
            let step = step.trim();
            if ["useradd ", "chown ", "systemctl "]
                .iter()
                .any(|s| step.starts_with(s))
            {
                continue;
            }
            let step = step
                .replace(" -o lethe -g lethe", "")
                .replace(" /", &format!(" {r}/"));
            let out = std::process::Command::new("sh")
                .args(["-c", &step])
                .current_dir(c)
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{step}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            ran.push(step);
        }
    }
    assert!(
        ran.iter().any(|s| s.starts_with("lethe keygen")) && ran.len() >= 5,
        "{ran:?}"
    );
    // lethe.toml as copied, its absolute paths moved under the root too (and
    // /metrics on a free port).
    let config = root.path().join("etc/lethe/lethe.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(":///", &format!("://{r}/"))
        .replace("= \"/", &format!("= \"{r}/"))
        .replace("127.0.0.1:9464", "127.0.0.1:0");
    std::fs::write(&config, text).unwrap();
    let env = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=LETHE_CONFIG="))
        .expect("the unit sets LETHE_CONFIG");
    let mut cmd = std::process::Command::new(format!("{r}/usr/local/bin/lethe"));
    cmd.args(["daemon", "--log-format", "json"])
        .env("LETHE_CONFIG", format!("{r}{env}"));
    for var in [
        "LETHE_DATABASE",
        "LETHE_DATABASE_FILE",
        "LETHE_SIGNING_KEY",
        "LETHE_LOG",
    ] {
        cmd.env_remove(var);
    }
    let (daemon, _) = crate::operate::Daemon::spawn(cmd);
    let (code, log) = daemon.terminate();
    assert_eq!(code, 0, "{log}");
}
