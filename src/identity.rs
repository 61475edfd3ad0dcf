//! The agent's identity on the series it exports, so that many agents writing into one
//! time-series database never write the same series: the `otel_sli_instance` label of
//! remote write and the `service.instance.id` resource attribute of OTLP metrics, each set
//! by default and overridden by configuring it (`external_labels.otel_sli_instance`,
//! `resource_attributes."service.instance.id"`).
//!
//! The default, first that is set: `MY_POD_NAME` (a gateway Deployment runs several pods
//! per node), `K8S_NODE_NAME` (the DaemonSet: one agent per node, the same name across
//! restarts and rollouts), else `<host name>:<admin port>`, which tells apart agents on
//! one host and reads like the `instance` label Prometheus gives a scrape target.
//!
//! Owns only the choice of the value; the exporters add it.

/// The remote-write label naming the agent.
pub const LABEL: &str = "otel_sli_instance";

/// The OTLP resource attribute naming the agent.
pub const ATTRIBUTE: &str = "service.instance.id";

/// Environment variables read for the default, in order (the deployment manifests set them
/// from the Kubernetes downward API).
pub const ENV_VARS: [&str; 2] = ["MY_POD_NAME", "K8S_NODE_NAME"];

/// The default identity: the first of [`ENV_VARS`] that `env` gives non-empty, else
/// `host:admin_port` (`unknown` when the host name cannot be read).
pub fn default_instance(
    env: impl Fn(&str) -> Option<String>,
    hostname: Option<String>,
    admin_port: u16,
) -> String {
    ENV_VARS
        .iter()
        .filter_map(|v| env(v))
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| {
            let host = hostname
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unknown".to_string());
            format!("{host}:{admin_port}")
        })
}

/// This host's name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The default identity of this process, whose admin server listens on `admin_port`.
pub fn detect(admin_port: u16) -> String {
    default_instance(|v| std::env::var(v).ok(), hostname(), admin_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn pod_name_wins_then_node_name_then_host_and_port() {
        let host = || Some("box-7\n".to_string());
        let both = [("MY_POD_NAME", "gw-5d9f"), ("K8S_NODE_NAME", "node-3")];
        assert_eq!(default_instance(env(&both), host(), 9464), "gw-5d9f");
        let node = [("K8S_NODE_NAME", "node-3")];
        assert_eq!(default_instance(env(&node), host(), 9464), "node-3");
        assert_eq!(default_instance(env(&[]), host(), 9464), "box-7:9464");
        assert_eq!(default_instance(env(&[]), host(), 19464), "box-7:19464");
    }

    #[test]
    fn empty_values_are_skipped() {
        let blank = [("MY_POD_NAME", " "), ("K8S_NODE_NAME", "")];
        assert_eq!(default_instance(env(&blank), Some("h".into()), 1), "h:1");
        assert_eq!(default_instance(env(&blank), None, 1), "unknown:1");
        assert_eq!(
            default_instance(env(&blank), Some("  ".into()), 1),
            "unknown:1"
        );
    }
}
