//! The CI examples under examples/ci cannot drift from the program: every `bakery ...` command
//! line in them is extracted (continuations joined, placeholders filled in) and parsed with the
//! real CLI definition.

use std::path::Path;

use clap::Parser;

/// Values for the examples' placeholders.
fn substitute(command: &str) -> String {
    let mut out = command.to_string();
    for (from, to) in [
        ("${{ matrix.version }}", "v1.32.3"),
        ("${{ matrix.arch }}", "x86-64"),
        ("\"$version\"", "v1.32.3"),
        ("\"$arch\"", "x86-64"),
        ("\"$newest\"", "v1.32.3"),
        ("\"$BASE_URL\"", "https://example.org/ext"),
        ("\"$BAKERY_URL\"", "https://example.org/bin/bakery"),
        ("\"$BAKERY_SHA256\"", "0000000000000000000000000000000000000000000000000000000000000000"),
    ] {
        out = out.replace(from, to);
    }
    // any other ${{ ... }} expression, $(...) substitution or $VARIABLE
    while let Some(start) = out.find("${{") {
        let end = out[start..].find("}}").map(|e| start + e + 2).unwrap_or(out.len());
        out.replace_range(start..end, "placeholder");
    }
    while let Some(start) = out.find("$(") {
        let end = out[start..].find(')').map(|e| start + e + 1).unwrap_or(out.len());
        out.replace_range(start..end, "placeholder");
    }
    out.split(' ')
        .map(|w| if w.trim_matches('"').starts_with('$') { "placeholder".to_string() } else { w.to_string() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shell words of `line` up to the first unquoted operator (`|`, `;`, `>`, `&`, `)`).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '|' | ';' | '>' | '&' | ')') => break,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Every bakery command line in `text`.
fn commands(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("bakery ") {
            let before = rest[..at].chars().last();
            let starts_word = before.is_none_or(|c| c.is_whitespace() || c == '(' || c == '$');
            if starts_word && rest[at + 7..].starts_with(|c: char| c.is_ascii_lowercase() || c == '-') {
                out.push(rest[at..].to_string());
            }
            rest = &rest[at + 7..];
        }
    }
    out
}

#[test]
fn every_bakery_command_in_the_ci_examples_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let mut subcommands = Vec::new();
    for file in ["github-actions.yml", "concourse.yml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let found = commands(&text);
        assert!(found.len() >= 4, "{file}: only {found:?}");
        for command in found {
            let words = words(&substitute(&command));
            match bakery::cli::Cli::try_parse_from(&words) {
                Ok(cli) => subcommands.push(format!("{file}: {:?}", std::mem::discriminant(&cli.command))),
                Err(e)
                    if matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                    ) => {}
                Err(e) => panic!("{file}: `{command}` does not parse as {words:?}:\n{e}"),
            }
        }
    }
    for (file, needed) in
        [("github-actions.yml", ["bakery list", "bakery create", "bakery release", "bakery butane", "bakery inspect"])]
    {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for needle in needed {
            assert!(commands(&text).iter().any(|c| c.starts_with(needle)), "{file} lacks {needle}");
        }
    }
}

#[test]
fn extraction_finds_commands_and_stops_at_shell_operators() {
    let text = "run: |\n  echo \"v=$(bakery list kubernetes --latest --json | jq -c .)\"\n  bakery create kubernetes \\\n    v1.32.3 x86-64 > log\n  chmod +x /usr/local/bin/bakery\n# bakery release in a comment\n";
    let found: Vec<Vec<String>> = commands(text).iter().map(|c| words(&substitute(c))).collect();
    assert_eq!(
        found,
        [
            vec!["bakery", "list", "kubernetes", "--latest", "--json"],
            vec!["bakery", "create", "kubernetes", "v1.32.3", "x86-64"],
        ]
    );
}
