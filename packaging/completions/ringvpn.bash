# bash completion for ringvpn(8). Install as
# /usr/share/bash-completion/completions/ringvpn
_ringvpn() {
    local cur prev words cword
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    local cmd="${COMP_WORDS[1]}" sub="${COMP_WORDS[2]}"
    local commands="run check genkey pubkey status peers ping ring-ping reload metrics net ca cert lab --help --version"
    local socket="-c --config -s --socket --help"

    case "$prev" in
        -c|--config|--ca|--ca-key|--crl|--list|--svg)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        -s|--socket)
            COMPREPLY=($(compgen -f -- "${cur:-/run/ringvpn/}"))
            return ;;
        -n|--count|--days|--not-before|--nodes|--pubkey|--name|--ip|--group|--routes|--network)
            return ;;
    esac

    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
    fi
    case "$cmd" in
        run|check) COMPREPLY=($(compgen -W "-c --config --help" -- "$cur")) ;;
        genkey|pubkey) COMPREPLY=($(compgen -f -- "$cur")) ;;
        status) COMPREPLY=($(compgen -W "$socket --json" -- "$cur")) ;;
        peers|reload|metrics|ring-ping) COMPREPLY=($(compgen -W "$socket" -- "$cur")) ;;
        ping) COMPREPLY=($(compgen -W "$socket -n" -- "$cur")) ;;
        net)
            if [[ $COMP_CWORD -eq 2 ]]; then
                COMPREPLY=($(compgen -W "stats check find crawl map" -- "$cur"))
            else
                case "$sub" in
                    crawl) COMPREPLY=($(compgen -W "$socket --json --sequential" -- "$cur")) ;;
                    map) COMPREPLY=($(compgen -W "$socket --svg" -- "$cur")) ;;
                    find) COMPREPLY=($(compgen -W "$socket --json ip= nat= version= relaying relayed" -- "$cur")) ;;
                    *) COMPREPLY=($(compgen -W "$socket --json" -- "$cur")) ;;
                esac
            fi ;;
        ca)
            if [[ $COMP_CWORD -eq 2 ]]; then
                COMPREPLY=($(compgen -W "init" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "--network --name --days" -- "$cur") $(compgen -f -- "$cur"))
            fi ;;
        cert)
            if [[ $COMP_CWORD -eq 2 ]]; then
                COMPREPLY=($(compgen -W "sign show verify revoke" -- "$cur"))
            else
                local opts
                case "$sub" in
                    sign) opts="--ca-key --ca --pubkey --name --ip --group --routes --days --not-before" ;;
                    show) opts="--json" ;;
                    verify) opts="--ca --crl" ;;
                    revoke) opts="--ca-key --list" ;;
                esac
                COMPREPLY=($(compgen -W "$opts" -- "$cur") $(compgen -f -- "$cur"))
            fi ;;
        lab)
            if [[ $COMP_CWORD -eq 2 ]]; then
                COMPREPLY=($(compgen -W "demo" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "--nodes" -- "$cur"))
            fi ;;
    esac
}
complete -F _ringvpn ringvpn
