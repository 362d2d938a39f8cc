# The parts of OpenWrt's /lib/functions.sh (UCI's shell API) and procd's
# helpers that ringvpn's init and uci-defaults scripts use, for testing
# them with busybox ash off the router. Semantics as documented for
# OpenWrt: a UCI file is shell (`config TYPE NAME`, `option KEY VALUE`,
# `list KEY VALUE`) run with these functions defined; values live in
# CONFIG_<section>_<option> variables. procd calls are recorded in
# $PROCD_LOG, one line each.

config_set() {
	eval "CONFIG_${1}_${2}=\$3"
}

config() {
	CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
	CONFIG_SECTION="${2:-cfg$CONFIG_NUM_SECTIONS}"
	CONFIG_SECTIONS="$CONFIG_SECTIONS $CONFIG_SECTION"
	config_set "$CONFIG_SECTION" TYPE "$1"
}

option() {
	local key="$1"
	shift
	config_set "$CONFIG_SECTION" "$key" "$*"
}

list() {
	local key="$1" len cur
	shift
	config_get len "$CONFIG_SECTION" "${key}_LENGTH" 0
	len=$((len + 1))
	config_set "$CONFIG_SECTION" "${key}_ITEM$len" "$*"
	config_set "$CONFIG_SECTION" "${key}_LENGTH" "$len"
	config_get cur "$CONFIG_SECTION" "$key"
	config_set "$CONFIG_SECTION" "$key" "${cur:+$cur }$*"
}

package() {
	:
}

config_load() {
	local s
	for s in $CONFIG_SECTIONS; do
		unset "CONFIG_${s}_TYPE"
	done
	CONFIG_SECTIONS=""
	CONFIG_NUM_SECTIONS=0
	. "${UCI_CONFIG_DIR:-/etc/config}/$1"
}

# config_get VAR SECTION OPTION [DEFAULT]
config_get() {
	local __value
	eval "__value=\${CONFIG_${2}_${3}:-}"
	eval "$1=\${__value:-\$4}"
}

config_get_bool() {
	local __b
	config_get __b "$2" "$3" "$4"
	case "$__b" in
	1 | on | true | yes | enabled) __b=1 ;;
	0 | off | false | no | disabled) __b=0 ;;
	*) __b="$4" ;;
	esac
	eval "$1=\$__b"
}

# config_foreach CALLBACK [TYPE [ARGS...]]
config_foreach() {
	local cb="$1" type="$2" s t
	shift
	[ $# -gt 0 ] && shift
	for s in $CONFIG_SECTIONS; do
		config_get t "$s" TYPE
		[ -z "$type" ] || [ "$t" = "$type" ] || continue
		"$cb" "$s" "$@"
	done
}

# config_list_foreach SECTION OPTION CALLBACK [ARGS...]
config_list_foreach() {
	local section="$1" key="$2" cb="$3" len i item
	shift 3
	config_get len "$section" "${key}_LENGTH" 0
	i=1
	while [ "$i" -le "$len" ]; do
		config_get item "$section" "${key}_ITEM$i"
		"$cb" "$item" "$@"
		i=$((i + 1))
	done
}

procd_open_instance() { echo "open_instance $*" >>"$PROCD_LOG"; }
procd_set_param() { echo "set_param $*" >>"$PROCD_LOG"; }
procd_close_instance() { echo "close_instance" >>"$PROCD_LOG"; }
procd_send_signal() { echo "send_signal $*" >>"$PROCD_LOG"; }
procd_add_reload_trigger() { echo "reload_trigger $*" >>"$PROCD_LOG"; }
logger() { echo "logger $*" >>"$PROCD_LOG"; }
# rc.common's start: procd takes the instances start_service declares.
start() { echo "start" >>"$PROCD_LOG"; start_service; }
