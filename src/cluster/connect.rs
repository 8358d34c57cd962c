//! Which cluster and which Node: for the agent, the kube client from `--kubeconfig`,
//! `KUBECONFIG`, the in-cluster service account, then the kubelet's own
//! `/etc/kubernetes/kubelet.conf` (a node's credentials may patch its own Node); for the rollout
//! commands, `--kubeconfig`, `KUBECONFIG`, `~/.kube/config` (as kubectl), then the in-cluster
//! service account. The Node name from `--node-name`, `NODE_NAME`, then the hostname.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where the client's configuration came from, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(PathBuf),
    Env,
    InCluster,
    Kubelet(PathBuf),
    /// `~/.kube/config`
    User(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(path) => write!(f, "--kubeconfig {}", path.display()),
            Source::Env => write!(f, "KUBECONFIG"),
            Source::InCluster => write!(f, "the in-cluster service account"),
            Source::Kubelet(path) => write!(f, "the kubelet's {}", path.display()),
            Source::User(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The kubelet's kubeconfig, under the node's root.
pub const KUBELET_CONF: &str = "etc/kubernetes/kubelet.conf";

/// The first configuration source that exists, in the documented order.
pub fn source(kubeconfig: Option<&Path>, root: &Path) -> Result<Source> {
    if let Some(path) = kubeconfig {
        return Ok(Source::Flag(path.to_path_buf()));
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return Ok(Source::Env);
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Ok(Source::InCluster);
    }
    let kubelet = root.join(KUBELET_CONF);
    if kubelet.is_file() {
        return Ok(Source::Kubelet(kubelet));
    }
    Err(crate::error::bad_input(format!(
        "no cluster credentials: pass --kubeconfig, set KUBECONFIG, run in a pod, or have {}",
        kubelet.display()
    )))
}

/// The first configuration source that exists for a command people (or a pod) run:
/// `--kubeconfig`, `KUBECONFIG`, `~/.kube/config`, then the in-cluster service account.
pub fn user_source(kubeconfig: Option<&Path>) -> Result<Source> {
    if let Some(path) = kubeconfig {
        return Ok(Source::Flag(path.to_path_buf()));
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return Ok(Source::Env);
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".kube/config"));
    if let Some(path) = home.filter(|p| p.is_file()) {
        return Ok(Source::User(path));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Ok(Source::InCluster);
    }
    Err(crate::error::bad_input(
        "no cluster credentials: pass --kubeconfig, set KUBECONFIG, have ~/.kube/config, or run in a pod",
    ))
}

/// A client for `source` that introduces itself as `bakery/<version> <role>` (the API server's
/// audit log and request metrics name it so).
pub async fn client(source: &Source, role: &str) -> Result<kube::Client> {
    let options = KubeConfigOptions::default();
    let mut config = match source {
        Source::Flag(path) | Source::Kubelet(path) | Source::User(path) => {
            let file = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("loading {}", path.display()))?
        }
        Source::Env => {
            let file = Kubeconfig::from_env()
                .context("reading KUBECONFIG")?
                .ok_or_else(|| anyhow!("KUBECONFIG names no file"))?;
            kube::Config::from_custom_kubeconfig(file, &options).await.context("loading KUBECONFIG")?
        }
        Source::InCluster => kube::Config::incluster().context("loading the in-cluster configuration")?,
    };
    let agent = format!("bakery/{} {role}", env!("CARGO_PKG_VERSION"));
    let agent = reqwest::header::HeaderValue::from_str(&agent).with_context(|| format!("{agent:?} as a User-Agent"))?;
    config.headers.push((reqwest::header::USER_AGENT, agent));
    kube::Client::try_from(config).with_context(|| format!("creating a Kubernetes client from {source}"))
}

/// The Node's name: the flag (or `NODE_NAME`, which clap reads into it), else the hostname
/// lowercased, as the kubelet registers it.
pub fn node_name(flag: Option<&str>) -> Result<String> {
    if let Some(name) = flag.map(str::trim).filter(|n| !n.is_empty()) {
        return valid(name);
    }
    let hostname =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the hostname for the Node name")?;
    valid(&hostname.trim().to_lowercase())
}

/// A Node name is a DNS subdomain: lowercase letters, digits, `-` and `.`, at most 253.
fn valid(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(name.to_string())
    } else {
        Err(crate::error::bad_input(format!(
            "{name:?} is not a Node name (lowercase letters, digits, '-' and '.'): pass --node-name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_subdomains() {
        assert_eq!(node_name(Some("worker-1.example")).unwrap(), "worker-1.example");
        for bad in ["Worker", "-a", "a_b", "a.", &"x".repeat(254)] {
            assert!(node_name(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_flag_wins_and_the_kubelet_conf_is_the_last_resort() {
        let root = tempfile::tempdir().unwrap();
        let flag = root.path().join("k.conf");
        assert_eq!(source(Some(&flag), root.path()).unwrap(), Source::Flag(flag.clone()));
        if std::env::var_os("KUBECONFIG").is_none() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            let err = source(None, root.path()).unwrap_err().to_string();
            assert!(err.contains("no cluster credentials") && err.contains("kubelet.conf"), "{err}");
            std::fs::create_dir_all(root.path().join("etc/kubernetes")).unwrap();
            std::fs::write(root.path().join(KUBELET_CONF), "").unwrap();
            assert_eq!(source(None, root.path()).unwrap(), Source::Kubelet(root.path().join(KUBELET_CONF)));
        }
    }
}
