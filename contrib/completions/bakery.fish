# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_bakery_global_optspecs
    string join \n v/verbose q/quiet config= mirror= cache-dir= extensions-dir= h/help V/version
end

function __fish_bakery_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_bakery_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_bakery_using_subcommand
    set -l cmd (__fish_bakery_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c bakery -n "__fish_bakery_needs_command" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_needs_command" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_needs_command" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_needs_command" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_needs_command" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_needs_command" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_needs_command" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_needs_command" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "create" -d 'Build the sysext image EXT-VERSION-ARCH.raw and update SHA256SUMS'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "inspect" -d 'Show what an image holds and whether it is valid'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "list" -d 'List the known extensions, or an extension\'s upstream versions'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "release" -d 'Index a directory of images for systemd-sysupdate: SHA256SUMS, signature, transfer files'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "butane" -d 'Print a Butane (or Ignition) config that provisions a Flatcar node from a release'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "node" -d 'On a node: stage, activate, inspect and roll back extension images'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "rollout" -d 'Roll an extension version out across a cluster: the controller, and its rollouts\' progress'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "doctor" -d 'Check what bakery needs on this host, with a fix for each problem'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish)'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "manpage" -d 'Print the manual page (or write all pages into a directory)'
complete -c bakery -n "__fish_bakery_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bakery -n "__fish_bakery_using_subcommand create" -l arch -d 'The architecture as a flag, instead of the positional ARCH' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -s o -l output -d 'Where the image and SHA256SUMS go [default: current directory]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand create" -l cni-version -d 'CNI plugins version (shorthand for --set cni_version=V)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l set -d 'Set a recipe option (repeatable)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l format -d 'Filesystem: squashfs (default, every kernel) or erofs (Linux 5.13+, has a UUID)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l compression -d 'Compression. squashfs: gzip (default, every kernel), zstd (4.14+), xz or lz4. erofs: lz4hc (default, level 12; Linux 5.13+), lz4 (5.13+), lzma (5.16+), zstd (about 6.10+) or none (5.4+)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l os -d 'ID= of the extension-release file: _any (default) or an os-release ID' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l sysupdate -d 'Also write this image\'s transfer files for systemd-sysupdate (needs --base-url); `--sysupdate true` and `--sysupdate false` work too' -r -f -a "true\t''
false\t''"
complete -c bakery -n "__fish_bakery_using_subcommand create" -l base-url -d 'Where the output directory is served (Source Path= of the transfer files)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l transfer-suffix -d 'Transfer file suffix: conf (systemd <= 256) or transfer (systemd >= 257)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l sign-key -d 'PEM private key (RSA or P-256, unencrypted) that signs the DDI\'s root hash' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand create" -l sign-cert -d 'PEM X.509 certificate of --sign-key\'s public key (nodes trust it in /etc/verity.d)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand create" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand create" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand create" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand create" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand create" -l force -d 'Replace an existing image'
complete -c bakery -n "__fish_bakery_using_subcommand create" -l dry-run -d 'Print the resolved plan as JSON; download nothing'
complete -c bakery -n "__fish_bakery_using_subcommand create" -l allow-unsigned -d 'Transfer files say Verify=no (no SHA256SUMS.gpg will be published)'
complete -c bakery -n "__fish_bakery_using_subcommand create" -l ddi -d 'Write a signed dm-verity Discoverable Disk Image: the filesystem, its hash tree and a PKCS#7 signature of the root hash in a GPT (needs --sign-key and --sign-cert)'
complete -c bakery -n "__fish_bakery_using_subcommand create" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand create" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand create" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand create" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -l verity-cert -d 'Verify a DDI\'s signature with this PEM certificate instead of /etc/verity.d and /usr/lib/verity.d (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand list" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand list" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand list" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand list" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand list" -l latest -d 'Only the newest patch of each supported minor (what a daily build makes)'
complete -c bakery -n "__fish_bakery_using_subcommand list" -l pre -d 'Include pre-releases'
complete -c bakery -n "__fish_bakery_using_subcommand list" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand list" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand list" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand list" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand list" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand release" -l base-url -d 'Where DIR is served; transfer files point systemd-sysupdate there' -r
complete -c bakery -n "__fish_bakery_using_subcommand release" -l sign-key -d 'gpg key (id, fingerprint or email) that signs SHA256SUMS into SHA256SUMS.gpg' -r
complete -c bakery -n "__fish_bakery_using_subcommand release" -l transfer-suffix -d 'Transfer file suffix: conf (systemd <= 256) or transfer (systemd >= 257)' -r
complete -c bakery -n "__fish_bakery_using_subcommand release" -l instances-max -d 'Images a node keeps per extension (InstancesMax=)' -r
complete -c bakery -n "__fish_bakery_using_subcommand release" -l verity-cert -d 'PEM certificate that verifies the DDIs\' signatures: published as <ext>.crt (listed in SHA256SUMS) for each extension with a DDI; refused unless it verifies all of them' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand release" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand release" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand release" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand release" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand release" -l allow-unsigned -d 'Publish without a signature; transfer files then say Verify=no'
complete -c bakery -n "__fish_bakery_using_subcommand release" -l strict -d 'Fail on invalid or foreign images instead of skipping them'
complete -c bakery -n "__fish_bakery_using_subcommand release" -l pre -d 'This directory is a pre-release channel: accept pre-release images'
complete -c bakery -n "__fish_bakery_using_subcommand release" -l json -d 'Print what was indexed as JSON'
complete -c bakery -n "__fish_bakery_using_subcommand release" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand release" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand release" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand release" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l arch -d 'The architecture as a flag, instead of the positional ARCH' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l base-url -d 'Where the release is served (what `bakery release --base-url` was given)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l with -d 'Another extension for the same node (repeatable)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l dir -d 'The release directory: SHA256SUMS (or the images), and SHA256SUMS.gpg and import-pubring.gpg unless --allow-unsigned; an <EXT>.crt there (`bakery release --verity-cert`) is installed as /etc/verity.d/<EXT>.crt' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l butane-version -d 'Butane flatcar variant version: 1.0.0 (Ignition spec 3.3.0) or 1.1.0 (spec 3.4.0, which needs Ignition 2.15 or later: Debian\'s Ignition 2.14 rejects it)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l transfer-suffix -d 'Transfer file suffix: conf (systemd <= 256) or transfer (systemd >= 257)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l bakery-url -d 'Also install bakery as /opt/bin/bakery from this URL (the static binary)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l bakery-sha256 -d 'The sha256 of the binary at --bakery-url (what scripts/build-static printed)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l ignition -d 'Print the Ignition JSON Butane would produce instead of Butane YAML'
complete -c bakery -n "__fish_bakery_using_subcommand butane" -l allow-unsigned -d 'Transfer files say Verify=no and no key is installed (for releases published with --allow-unsigned)'
complete -c bakery -n "__fish_bakery_using_subcommand butane" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand butane" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand butane" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand butane" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "update" -d 'Stage the newest image the transfer files (or the node config) follow, like systemd-sysupdate'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "refresh" -d 'Validate and merge what is linked, restart changed units, check them, roll back failures'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "status" -d 'Linked, merged, recorded and staged versions, and unit states'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "rollback" -d 'Link an extension back to its previous image and refresh'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "watch" -d 'Follow the upgrade targets set on this Node (target.bakery.dev/<ext>) and report back'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "bootstrap" -d 'Install a release\'s components (files, services, scripts, images) where they changed'
complete -c bakery -n "__fish_bakery_using_subcommand node; and not __fish_seen_subcommand_from update refresh status rollback watch bootstrap help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l activate -d 'Refresh afterwards'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from refresh" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l kubeconfig -d 'Cluster credentials [default: KUBECONFIG, in-cluster, then /etc/kubernetes/kubelet.conf]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l node-name -d 'This Node\'s name [default: the hostname, lowercased]' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l metrics-addr -d 'Serve Prometheus metrics at http://ADDR/metrics (off by default)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from watch" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l release -d 'The release to install, e.g. v1.32.3' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l role -d 'This node\'s role; components tagged for others are skipped [default: metadata\'s role, else worker]' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l metadata -d 'Node metadata, JSON or YAML [default: /etc/bakery/metadata.json when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l metadata-url -d 'Fetch the node metadata from this URL (https, or http to a link-local or loopback address)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l set -d 'Override a metadata key (a dotted path), e.g. cluster.dns=10.96.0.10 (repeatable)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l components -d 'A components repository over the built-in one: DIR, https://BASE, FILE.zip or URL.zip#sha256=HEX' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l root -d 'The node\'s root directory; other than / (a mounted image, a test root) systemd is left alone' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l dry-run -d 'Print the plan and change nothing'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from bootstrap" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "update" -d 'Stage the newest image the transfer files (or the node config) follow, like systemd-sysupdate'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "refresh" -d 'Validate and merge what is linked, restart changed units, check them, roll back failures'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "status" -d 'Linked, merged, recorded and staged versions, and unit states'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Link an extension back to its previous image and refresh'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "watch" -d 'Follow the upgrade targets set on this Node (target.bakery.dev/<ext>) and report back'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "bootstrap" -d 'Install a release\'s components (files, services, scripts, images) where they changed'
complete -c bakery -n "__fish_bakery_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -l kubeconfig -d 'Cluster credentials [default: KUBECONFIG, ~/.kube/config, then the in-cluster service account]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -f -a "controller" -d 'Set Nodes\' upgrade targets as ExtensionRollouts ask, within their budgets (one replica leads)'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -f -a "list" -d 'The ExtensionRollouts: phase and Nodes updated, in flight, failed and pending'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -f -a "status" -d 'One ExtensionRollout: phase, counts, the Nodes in flight and failed, conditions'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and not __fish_seen_subcommand_from controller list status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l namespace -d 'The leader-election Lease\'s namespace [default: the pod\'s own namespace, else default]' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l identity -d 'This replica\'s name in the Lease, unique among replicas [default: the hostname]' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l lease-duration -d 'How long the leader\'s Lease lasts unrenewed (renewed every third of it), e.g. 15s or 1m' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l metrics-addr -d 'Serve Prometheus metrics at http://ADDR/metrics (off by default)' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l kubeconfig -d 'Cluster credentials [default: KUBECONFIG, ~/.kube/config, then the in-cluster service account]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from controller" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -l kubeconfig -d 'Cluster credentials [default: KUBECONFIG, ~/.kube/config, then the in-cluster service account]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -l kubeconfig -d 'Cluster credentials [default: KUBECONFIG, ~/.kube/config, then the in-cluster service account]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "controller" -d 'Set Nodes\' upgrade targets as ExtensionRollouts ask, within their budgets (one replica leads)'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "list" -d 'The ExtensionRollouts: phase and Nodes updated, in flight, failed and pending'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "status" -d 'One ExtensionRollout: phase, counts, the Nodes in flight and failed, conditions'
complete -c bakery -n "__fish_bakery_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -l root -d 'The host\'s root directory' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -l json -d 'Print JSON instead of text'
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand completions" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand completions" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand completions" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand completions" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand completions" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand completions" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand completions" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -l dir -d 'Write bakery.1 and a page per subcommand (bakery-create.1, ...) into DIR instead of printing bakery.1' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -l config -d 'Configuration file [default: ./bakery.toml when present]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -l mirror -d 'Rewrite URLs starting with FROM to start with TO (repeatable; env BAKERY_MIRRORS=FROM=TO,...)' -r
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -l cache-dir -d 'Download cache [default: $XDG_CACHE_HOME/bakery or ~/.cache/bakery]' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -l extensions-dir -d 'A folder of extra recipes (<DIR>/<name>/recipe.yaml), overriding built-in ones (repeatable)' -r -F
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -s v -l verbose -d 'More log output (-v debug, -vv trace); RUST_LOG overrides'
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -s q -l quiet -d 'Only errors on stderr, no progress'
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c bakery -n "__fish_bakery_using_subcommand manpage" -s V -l version -d 'Print version'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "create" -d 'Build the sysext image EXT-VERSION-ARCH.raw and update SHA256SUMS'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "inspect" -d 'Show what an image holds and whether it is valid'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "list" -d 'List the known extensions, or an extension\'s upstream versions'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "release" -d 'Index a directory of images for systemd-sysupdate: SHA256SUMS, signature, transfer files'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "butane" -d 'Print a Butane (or Ignition) config that provisions a Flatcar node from a release'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "node" -d 'On a node: stage, activate, inspect and roll back extension images'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "rollout" -d 'Roll an extension version out across a cluster: the controller, and its rollouts\' progress'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "doctor" -d 'Check what bakery needs on this host, with a fix for each problem'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish)'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "manpage" -d 'Print the manual page (or write all pages into a directory)'
complete -c bakery -n "__fish_bakery_using_subcommand help; and not __fish_seen_subcommand_from create inspect list release butane node rollout doctor completions manpage help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "update" -d 'Stage the newest image the transfer files (or the node config) follow, like systemd-sysupdate'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "refresh" -d 'Validate and merge what is linked, restart changed units, check them, roll back failures'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "status" -d 'Linked, merged, recorded and staged versions, and unit states'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "rollback" -d 'Link an extension back to its previous image and refresh'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "watch" -d 'Follow the upgrade targets set on this Node (target.bakery.dev/<ext>) and report back'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "bootstrap" -d 'Install a release\'s components (files, services, scripts, images) where they changed'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "controller" -d 'Set Nodes\' upgrade targets as ExtensionRollouts ask, within their budgets (one replica leads)'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "list" -d 'The ExtensionRollouts: phase and Nodes updated, in flight, failed and pending'
complete -c bakery -n "__fish_bakery_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "status" -d 'One ExtensionRollout: phase, counts, the Nodes in flight and failed, conditions'
