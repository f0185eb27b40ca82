# bash completion for stormguard. The commands and each command's flags
# come from the binary's own --help (the CLI's option tables), asked when
# completing, so they cannot drift from the binary in use. Installed to
# share/bash-completion/completions/stormguard by cmake --install.
_stormguard() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local bin=${COMP_WORDS[0]}
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$("$bin" --help 2>/dev/null |
            awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}') --help --version -V" \
            -- "$cur"))
        return
    fi
    local cmd=${COMP_WORDS[1]}
    case "$prev" in
    -c | --config | --db | --out | --world | --log-file | --admin-token-file | --tls-cert | --tls-key)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    esac
    if [[ $cur == -* ]]; then
        # its own flags and the configuration it reads, then every other
        # configuration flag (all are accepted)
        COMPREPLY=($(compgen -W "$({ "$bin" "$cmd" --help; "$bin" config --help; } 2>/dev/null |
            grep -o -- '--[a-z][a-z-]*' | sort -u) -c" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}
complete -F _stormguard stormguard
