//! `bakery butane EXT VERSION ARCH --base-url URL`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Global;
use crate::butane::{self, ButaneVersion, Request};
use crate::error::bad_input;
use crate::model::{ExtName, Sha256};
use crate::pipeline::versions;
use crate::sysupdate::transfer::Suffix;

#[derive(Debug, Args)]
#[command(
    override_usage = "bakery butane --base-url <URL> [OPTIONS] <EXT> <VERSION> <ARCH>\n       bakery butane --base-url <URL> [OPTIONS] <EXT> <VERSION> --arch <ARCH>"
)]
pub struct ButaneArgs {
    /// Extension name, e.g. kubernetes
    #[arg(value_name = "EXT")]
    pub extension: String,
    /// Exact version, e.g. v1.32.0 (the node follows its patch releases)
    #[arg(value_name = "VERSION")]
    pub ext_version: String,
    #[command(flatten)]
    pub arch: super::create::ArchArg,
    /// Where the release is served (what `bakery release --base-url` was given)
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// Another extension for the same node (repeatable)
    #[arg(long = "with", value_name = "EXT=VERSION")]
    pub with: Vec<String>,
    /// The release directory: SHA256SUMS (or the images), and SHA256SUMS.gpg and
    /// import-pubring.gpg unless --allow-unsigned; an <EXT>.crt there (`bakery release
    /// --verity-cert`) is installed as /etc/verity.d/<EXT>.crt
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Butane flatcar variant version: 1.0.0 (Ignition spec 3.3.0) or 1.1.0 (spec 3.4.0, which
    /// needs Ignition 2.15 or later: Debian's Ignition 2.14 rejects it)
    #[arg(long, value_name = "VERSION", default_value = "1.0.0")]
    pub butane_version: ButaneVersion,
    /// Print the Ignition JSON Butane would produce instead of Butane YAML
    #[arg(long)]
    pub ignition: bool,
    /// Transfer file suffix: conf (systemd <= 256) or transfer (systemd >= 257)
    #[arg(long, value_name = "SUFFIX", default_value = "conf")]
    pub transfer_suffix: Suffix,
    /// Transfer files say Verify=no and no key is installed (for releases published with
    /// --allow-unsigned)
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Also install bakery as /opt/bin/bakery from this URL (the static binary)
    #[arg(long, value_name = "URL", requires = "bakery_sha256")]
    pub bakery_url: Option<String>,
    /// The sha256 of the binary at --bakery-url (what scripts/build-static printed)
    #[arg(long, value_name = "HEX", requires = "bakery_url")]
    pub bakery_sha256: Option<Sha256>,
}

pub fn run(global: &Global, args: &ButaneArgs) -> Result<()> {
    let settings = global.settings()?;
    let mut wanted = vec![(args.extension.clone(), args.ext_version.clone())];
    for with in &args.with {
        let (name, version) =
            with.split_once('=').ok_or_else(|| bad_input(format!("--with {with:?}: expected EXT=VERSION")))?;
        wanted.push((name.to_string(), version.to_string()));
    }
    let mut images = Vec::new();
    for (name, version) in wanted {
        let recipe = settings.catalog.get(&name)?.recipe()?;
        let version = versions::exact(&recipe.version, &name, &version)?;
        let name: ExtName = name.parse().map_err(|e| bad_input(format!("{e}")))?;
        if images.iter().any(|(n, _): &(ExtName, _)| *n == name) {
            return Err(bad_input(format!("{name} is given twice")));
        }
        images.push((name, version));
    }
    if args.allow_unsigned {
        tracing::warn!("transfer files say Verify=no: the node will trust the transport");
    }
    let request = Request {
        images,
        arch: args.arch.get(),
        base_url: args.base_url.clone(),
        butane_version: args.butane_version,
        dir: args.dir.clone(),
        verify: !args.allow_unsigned,
        suffix: args.transfer_suffix,
        bakery: args.bakery_url.clone().zip(args.bakery_sha256),
    };
    let config = butane::plan(&request)?;
    if args.ignition {
        out!("{}", butane::ignition::to_ignition(&config))?;
    } else {
        out!("{}", butane::to_butane(&config)?)?;
    }
    Ok(())
}
