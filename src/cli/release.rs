//! `bakery release DIR`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::release::{self, Options};
use crate::sysupdate::transfer::Suffix;

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The directory of images (served as is by a static web server)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where DIR is served; transfer files point systemd-sysupdate there
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// gpg key (id, fingerprint or email) that signs SHA256SUMS into SHA256SUMS.gpg
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<String>,
    /// Publish without a signature; transfer files then say Verify=no
    #[arg(long, conflicts_with = "sign_key")]
    pub allow_unsigned: bool,
    /// Transfer file suffix: conf (systemd <= 256) or transfer (systemd >= 257)
    #[arg(long, value_name = "SUFFIX", default_value = "conf")]
    pub transfer_suffix: Suffix,
    /// Fail on invalid or foreign images instead of skipping them
    #[arg(long)]
    pub strict: bool,
    /// This directory is a pre-release channel: accept pre-release images
    #[arg(long)]
    pub pre: bool,
    /// Images a node keeps per extension (InstancesMax=)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub instances_max: u32,
    /// PEM certificate that verifies the DDIs' signatures: published as <ext>.crt (listed in
    /// SHA256SUMS) for each extension with a DDI; refused unless it verifies all of them
    #[arg(long, value_name = "CERT.pem")]
    pub verity_cert: Option<PathBuf>,
    /// Print what was indexed as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ReleaseArgs) -> Result<()> {
    let options = Options {
        base_url: args.base_url.clone(),
        sign_key: args.sign_key.clone(),
        allow_unsigned: args.allow_unsigned,
        suffix: args.transfer_suffix,
        strict: args.strict,
        pre: args.pre,
        instances_max: args.instances_max,
        verity_cert: args.verity_cert.clone(),
    };
    let released = release::release(&args.dir, &options)?;
    let extensions: std::collections::BTreeSet<&str> = released.images.iter().map(|i| i.extension.as_str()).collect();
    tracing::info!(
        "released {} images of {} extensions from {} ({} skipped, {} files changed)",
        released.images.len(),
        extensions.len(),
        args.dir.display(),
        released.skipped.len(),
        released.written.len()
    );
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&released)?)?;
    } else {
        for path in &released.written {
            outln!("{}", path.display())?;
        }
    }
    Ok(())
}
