//! `bakery create EXT VERSION ARCH`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgAction, Args};

use super::Global;
use crate::ddi::sign::Signer;
use crate::error::bad_input;
use crate::model::{Arch, Compression, Format, OsTarget};
use crate::pipeline::create::{self, CreateJob};
use crate::pipeline::resolve::Request;
use crate::release::transfers;

#[derive(Debug, Args)]
#[command(
    override_usage = "bakery create [OPTIONS] <EXT> <VERSION> <ARCH>\n       bakery create [OPTIONS] <EXT> <VERSION> --arch <ARCH>"
)]
pub struct CreateArgs {
    /// Extension name, e.g. kubernetes (`bakery list` shows them)
    #[arg(value_name = "EXT")]
    pub extension: String,
    /// Upstream version: exact (v1.32.0), a minor (1.32: its newest patch) or latest;
    /// `bakery list EXT` shows them
    #[arg(value_name = "VERSION")]
    pub ext_version: String,
    #[command(flatten)]
    pub arch: ArchArg,
    /// Where the image and SHA256SUMS go [default: current directory]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// CNI plugins version (shorthand for --set cni_version=V)
    #[arg(long, value_name = "V")]
    pub cni_version: Option<String>,
    /// Set a recipe option (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// Filesystem: squashfs (default, every kernel) or erofs (Linux 5.13+, has a UUID)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Compression. squashfs: gzip (default, every kernel), zstd (4.14+), xz or lz4.
    /// erofs: lz4hc (default, level 12; Linux 5.13+), lz4 (5.13+), lzma (5.16+), zstd
    /// (about 6.10+) or none (5.4+)
    #[arg(long, value_name = "ALGO")]
    pub compression: Option<Compression>,
    /// ID= of the extension-release file: _any (default) or an os-release ID
    #[arg(long, value_name = "ID")]
    pub os: Option<OsTarget>,
    /// Replace an existing image
    #[arg(long)]
    pub force: bool,
    /// Print the resolved plan as JSON; download nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also write this image's transfer files for systemd-sysupdate (needs --base-url);
    /// `--sysupdate true` and `--sysupdate false` work too
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = false,
        default_value_t = false,
        default_missing_value = "true",
        hide_default_value = true,
        action = ArgAction::Set,
        requires_if("true", "base_url")
    )]
    pub sysupdate: bool,
    /// Where the output directory is served (Source Path= of the transfer files)
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Transfer file suffix: conf (systemd <= 256) or transfer (systemd >= 257)
    #[arg(long, value_name = "SUFFIX", default_value = "conf")]
    pub transfer_suffix: crate::sysupdate::transfer::Suffix,
    /// Transfer files say Verify=no (no SHA256SUMS.gpg will be published)
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Write a signed dm-verity Discoverable Disk Image: the filesystem, its hash tree and a
    /// PKCS#7 signature of the root hash in a GPT (needs --sign-key and --sign-cert)
    #[arg(long)]
    pub ddi: bool,
    /// PEM private key (RSA or P-256, unencrypted) that signs the DDI's root hash
    #[arg(long, value_name = "KEY.pem")]
    pub sign_key: Option<PathBuf>,
    /// PEM X.509 certificate of --sign-key's public key (nodes trust it in /etc/verity.d)
    #[arg(long, value_name = "CERT.pem")]
    pub sign_cert: Option<PathBuf>,
}

/// ARCH as the positional argument or as `--arch ARCH` (how sysext-bakery spells it): exactly
/// one of the two.
#[derive(Debug, Args)]
#[group(id = "architecture", required = true, multiple = false)]
pub struct ArchArg {
    /// Architecture: x86-64 or arm64 (amd64, x86_64, aarch64 are accepted)
    #[arg(value_name = "ARCH")]
    positional: Option<Arch>,
    /// The architecture as a flag, instead of the positional ARCH
    #[arg(long = "arch", value_name = "ARCH")]
    flag: Option<Arch>,
}

impl ArchArg {
    pub fn get(&self) -> Arch {
        self.positional.or(self.flag).expect("clap requires ARCH or --arch")
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((key.trim().to_string(), value.to_string()))
}

pub fn run(global: &Global, args: &CreateArgs) -> Result<()> {
    let settings = global.settings()?;
    let defaults = &settings.config.file.create;
    let origin = || settings.config.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let format = match (args.format, &defaults.format) {
        (Some(f), _) => f,
        (None, Some(text)) => text.parse().map_err(|e| bad_input(format!("{}: [create] format: {e}", origin())))?,
        (None, None) => Format::default(),
    };
    let compression = match (args.compression, &defaults.compression) {
        (Some(c), _) => format.check(c).map_err(|e| bad_input(format!("--compression {c}: {e}")))?,
        (None, Some(text)) => {
            let named = |e: &dyn std::fmt::Display| bad_input(format!("{}: [create] compression: {e}", origin()));
            let c: Compression = text.parse().map_err(|e| named(&e))?;
            format.check(c).map_err(|e| named(&e))?
        }
        (None, None) => format.default_compression(),
    };
    let os = match (&args.os, &defaults.os) {
        (Some(os), _) => os.clone(),
        (None, Some(text)) => text.parse().map_err(|e| bad_input(format!("{}: [create] os: {e}", origin())))?,
        (None, None) => OsTarget::Any,
    };
    let mut options = args.options.clone();
    if let Some(cni) = &args.cni_version {
        options.push(("cni_version".to_string(), cni.clone()));
    }
    let request = Request {
        extension: args.extension.clone(),
        version: args.ext_version.clone(),
        arch: args.arch.get(),
        options,
        os,
        format,
        compression,
        source_date_epoch: source_date_epoch()?,
    };
    let ddi = signer(args, defaults)?;
    if args.dry_run {
        let resolved = super::until_interrupted(async {
            let http = settings.http()?;
            create::resolve(&settings, &http, &request).await
        })?;
        let mut plan = serde_json::to_value(&resolved)?;
        if let (Some(signer), Some(plan)) = (&ddi, plan.as_object_mut()) {
            plan.insert(
                "ddi".to_string(),
                serde_json::json!({
                    "sign_key": signer.key_path,
                    "sign_cert": signer.cert_path,
                    "subject": signer.subject(),
                    "certificate_fingerprint": signer.fingerprint(),
                }),
            );
        }
        outln!("{}", serde_json::to_string_pretty(&plan)?)?;
        return Ok(());
    }
    let job = CreateJob {
        request,
        output: args.output.clone().or_else(|| defaults.output.clone()).unwrap_or_else(|| PathBuf::from(".")),
        force: args.force,
        ddi: ddi.map(std::sync::Arc::new),
    };
    let base_url = args.base_url.as_deref().map(crate::release::base_url).transpose()?;
    let built = super::until_interrupted(create::create(&settings, &job))?;
    outln!("{}", built.published.image.display())?;
    outln!("{}", built.published.sums.display())?;
    if let (true, Some(base_url)) = (args.sysupdate, base_url) {
        if args.allow_unsigned {
            tracing::warn!("transfer files say Verify=no: nodes will trust the transport");
        }
        let (name, version) = (built.resolved.extension.as_str(), built.resolved.version.as_str());
        let suffix = args.transfer_suffix;
        let mut files = transfers::for_extension(name, &[version], &base_url, !args.allow_unsigned, 3, suffix)?;
        files.push(transfers::noop(suffix));
        for path in crate::release::write_transfers(&job.output, &files, suffix)? {
            outln!("{}", path.display())?;
        }
    }
    Ok(())
}

/// The DDI signer of `--ddi` (or `[create] ddi`), its key and certificate loaded and checked
/// to belong together before anything is downloaded.
fn signer(args: &CreateArgs, defaults: &crate::config::CreateConfig) -> Result<Option<Signer>> {
    let ddi = args.ddi || defaults.ddi.unwrap_or(false);
    let key = args.sign_key.as_ref().or(defaults.sign_key.as_ref());
    let cert = args.sign_cert.as_ref().or(defaults.sign_cert.as_ref());
    if !ddi {
        if args.sign_key.is_some() || args.sign_cert.is_some() {
            return Err(bad_input("--sign-key and --sign-cert sign DDIs: add --ddi"));
        }
        return Ok(None);
    }
    match (key, cert) {
        (Some(key), Some(cert)) => Ok(Some(Signer::load(key, cert)?)),
        (None, _) => Err(bad_input("--ddi needs --sign-key KEY.pem (or [create] sign_key in bakery.toml)")),
        (_, None) => Err(bad_input("--ddi needs --sign-cert CERT.pem (or [create] sign_cert in bakery.toml)")),
    }
}

/// `SOURCE_DATE_EPOCH` (default 0): every entry's modification time.
fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map_err(|_| {
            bad_input(format!(
                "SOURCE_DATE_EPOCH={text:?} is not a number of seconds that fits SquashFS (0 to 4294967295)"
            ))
        }),
        _ => Ok(0),
    }
}
