//! `bakery inspect IMAGE`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::error::bad_input;
use crate::image::inspect;
use crate::pipeline::validate;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image file (.raw)
    pub image: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Verify a DDI's signature with this PEM certificate instead of /etc/verity.d and
    /// /usr/lib/verity.d (repeatable)
    #[arg(long = "verity-cert", value_name = "CERT.pem")]
    pub verity_cert: Vec<PathBuf>,
}

/// Prints the inspection; exits 2 when the image has error findings.
pub fn run(args: &InspectArgs) -> Result<()> {
    let file_name = args.image.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let trust = if args.verity_cert.is_empty() {
        inspect::Trust::Root(PathBuf::from("/"))
    } else {
        inspect::Trust::Files(args.verity_cert.clone())
    };
    let inspection = inspect::inspect_with(&args.image, file_name, &trust)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&inspection)?)?;
    } else {
        out!("{}", inspect::render(&inspection))?;
    }
    let errors = validate::errors(&inspection.findings).len();
    if errors > 0 {
        let findings = if errors == 1 { "finding" } else { "findings" };
        return Err(bad_input(format!("{} is invalid ({errors} error {findings})", args.image.display())));
    }
    Ok(())
}
