#!/usr/bin/env bash
# Checks the README's "Beyond one machine" set-up: three emcached instances
# behind twemproxy (Debian's nutcracker) with the README's configuration,
# ketama over fnv1a_64. bench/cmd/proxycheck writes a few thousand keys
# through the proxy with gomemcache, reads every one back, and checks from
# each instance's stats that it holds between 20% and 47% of them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

instances=3
keys=3000

if ! command -v nutcracker >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends nutcracker
fi

workdir=$(mktemp -d)
pids=()
cleanup() {
	local rc=$? pid
	for pid in "${pids[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ $rc != 0 ]]; then
		local log
		for log in "$workdir"/*.log; do
			[[ -e $log ]] || continue
			echo "--- $log"
			tail -n 30 "$log"
		done
	fi
	rm -rf "$workdir"
	exit "$rc"
}
trap cleanup EXIT

go build -o "$workdir/emcached" ./cmd/emcached
(cd bench && go build -o "$workdir/proxycheck" ./cmd/proxycheck)

user_args=()
if [[ $(id -u) == 0 ]]; then
	# emcached, like memcached, refuses to run as root without -u.
	if id nobody >/dev/null 2>&1; then user_args=(-u nobody); else user_args=(-u root); fi
fi

# start_emcached N: starts instance N on a port the kernel picks (-p -1)
# and sets addr to the address it reports in its log.
start_emcached() {
	local log="$workdir/emcached$1.log" i pid
	: >"$log" # exists before the first look, which may come before the fork
	"$workdir/emcached" "${user_args[@]}" -l 127.0.0.1 -p -1 -m 16 -t 2 -v >"$log" 2>&1 &
	pid=$!
	pids+=("$pid")
	addr=""
	for ((i = 0; i < 200; i++)); do
		addr=$(sed -n 's/.*msg="server listening".* addr=\([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -n1)
		[[ -n $addr ]] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "emcached $1 exited during start-up"
			return 1
		fi
		sleep 0.05
	done
	echo "emcached $1 did not report a listening address within 10s"
	return 1
}

servers=()
for ((n = 1; n <= instances; n++)); do
	start_emcached "$n"
	servers+=("$addr")
	echo "emcache$n on $addr"
done

# The configuration is the README's, with the ports of this run.
sed -n '/^## Beyond one machine/,/^## /p' README.md |
	sed -n '/^```yaml$/,/^```$/p' | sed '1d;$d' >"$workdir/readme.yml"
grep -q 'distribution: ketama' "$workdir/readme.yml"
grep -q 'hash: fnv1a_64' "$workdir/readme.yml"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		port_in_use "$p" || break
	done
	echo "$p"
}

# nutcracker binds the ports it is given; another process may take a free
# one meanwhile, so a failed start is retried with new ports.
proxy=""
for ((attempt = 1; attempt <= 5; attempt++)); do
	listen_port=$(free_port)
	stats_port=$(free_port)
	conf="$workdir/nutcracker.yml"
	sed -e "s/127\.0\.0\.1:22121/127.0.0.1:$listen_port/" \
		-e "s/127\.0\.0\.1:11211:/${servers[0]}:/" \
		-e "s/127\.0\.0\.1:11212:/${servers[1]}:/" \
		-e "s/127\.0\.0\.1:11213:/${servers[2]}:/" \
		"$workdir/readme.yml" >"$conf"
	if ((attempt == 1)); then
		echo "--- nutcracker.yml"
		cat "$conf"
		nutcracker -t -c "$conf"
	fi
	nutcracker -c "$conf" -s "$stats_port" -a 127.0.0.1 -p "$workdir/nutcracker.pid" \
		-o "$workdir/nutcracker.log" -v 4 &
	nc_pid=$!
	pids+=("$nc_pid")
	for ((i = 0; i < 200; i++)); do
		if ! kill -0 "$nc_pid" 2>/dev/null; then
			echo "nutcracker exited at start-up (attempt $attempt)"
			break
		fi
		if port_in_use "$listen_port"; then
			proxy="127.0.0.1:$listen_port"
			break
		fi
		sleep 0.05
	done
	[[ -z $proxy ]] || break
done
if [[ -z $proxy ]]; then
	echo "nutcracker did not start"
	exit 1
fi
echo "nutcracker on $proxy"

"$workdir/proxycheck" -proxy "$proxy" -servers "$(IFS=,; echo "${servers[*]}")" -keys "$keys" \
	-min-share 0.20 -max-share 0.47
