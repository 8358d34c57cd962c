//! Parsing published checksum files. Pure.

use crate::model::Sha256;
use crate::recipe::ChecksumFormat;

/// The digest for `file_name` in a checksum file of the given format.
pub fn parse(text: &str, format: ChecksumFormat, file_name: &str) -> Result<Sha256, String> {
    match format {
        ChecksumFormat::Digest => {
            let token = text.split_whitespace().next().ok_or("the checksum file is empty")?;
            token.parse().map_err(|e| format!("{e}"))
        }
        ChecksumFormat::Sha256sum => parse_sha256sum(text, file_name),
    }
}

fn parse_sha256sum(text: &str, file_name: &str) -> Result<Sha256, String> {
    let mut names = Vec::new();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for (index, line) in lines.iter().enumerate() {
        let (hex, name) = match line.split_once(char::is_whitespace) {
            Some((hex, rest)) => (hex, rest.trim_start().trim_start_matches('*')),
            None => (*line, ""),
        };
        let digest = || hex.parse::<Sha256>().map_err(|e| format!("line {}: {e}", index + 1));
        let base = name.rsplit('/').next().unwrap_or(name);
        if name == file_name || base == file_name || (name.is_empty() && lines.len() == 1) {
            return digest();
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err("the checksum file is empty".to_string());
    }
    Err(format!("no line for {file_name} (the file lists {})", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "00000000000000000000000000000000000000000000000000000000000000b2";

    #[test]
    fn bare_digest_with_trailing_newline() {
        assert_eq!(parse(&format!("{A}\n"), ChecksumFormat::Digest, "kubelet").unwrap().to_string(), A);
        assert!(parse("", ChecksumFormat::Digest, "kubelet").is_err());
        assert!(parse("<html>", ChecksumFormat::Digest, "kubelet").unwrap_err().contains("not a sha256"));
    }

    #[test]
    fn sha256sum_picks_the_line_for_the_file() {
        let text = format!("{A}  cni-plugins-linux-amd64-v1.6.2.tgz\n{B} *dist/cni-plugins-linux-arm64-v1.6.2.tgz\n");
        assert_eq!(
            parse(&text, ChecksumFormat::Sha256sum, "cni-plugins-linux-arm64-v1.6.2.tgz").unwrap().to_string(),
            B
        );
        let err = parse(&text, ChecksumFormat::Sha256sum, "other.tgz").unwrap_err();
        assert!(err.contains("no line for other.tgz") && err.contains("cni-plugins-linux-amd64-v1.6.2.tgz"), "{err}");
    }

    #[test]
    fn sha256sum_single_line_without_name_is_accepted() {
        assert_eq!(parse(A, ChecksumFormat::Sha256sum, "x").unwrap().to_string(), A);
    }
}
