#!/usr/bin/env bash
# Failover drill: apilb<->apilb vs keepalived<->keepalived, same advert interval, in a
# throwaway lab of network namespaces (root). For each failure mode (kill -9, SIGTERM, link
# down) and each implementation, RUNS runs: n1 (priority 150) is master, n2 (100) backup, a
# client in n3 connects through the VIP every 5 ms. Prints min/median/max of
#   vip:    failure -> VIP present on n2 (polled every ~5 ms with `ip`)
#   outage: longest gap between successful client connections through the VIP
# The keepalived runs put apilb (without a vip section) on both nodes as the data plane, so
# both columns measure the same proxy; only the VRRP speaker differs.
#
# Usage: sudo benches/vip/drill.sh [RUNS] [ADVERT_SECONDS]   (needs keepalived, python3)
set -euo pipefail
RUNS=${1:-5}
ADV=${2:-0.1}
ADV_MS=$(python3 -c "print(int(round($ADV*1000)))")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
APILB=${APILB:-$ROOT/target/debug/apilb}   # APILB=target/release/apilb for a release build
P=apilbdrill$$
VIP=10.251.0.100
WORK=$(mktemp -d)
cleanup() {
  for n in n1 n2 n3; do ip netns pids $P-$n 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
  for n in sw n1 n2 n3; do ip netns del $P-$n 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $P-sw
ip -n $P-sw link add br0 type bridge mcast_snooping 0
ip -n $P-sw link set br0 up
for i in 1 2 3; do
  ip netns add $P-n$i
  ip -n $P-sw link add p$i type veth peer name eth0 netns $P-n$i
  ip -n $P-sw link set p$i master br0 up
  ip -n $P-n$i addr add 10.251.0.1$i/24 dev eth0
  ip -n $P-n$i link set eth0 up
  ip -n $P-n$i link set lo up
done

# Backend in n3.
ip netns exec $P-n3 python3 -c '
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.251.0.13",7000)); s.listen(128)
while True:
    c,_=s.accept(); c.sendall(b"ok\n"); c.close()' &

lb_yaml() { # $1 priority or "none"
  cat <<Y
listen: ["$VIP:6443"]
backends: [{name: b, address: "10.251.0.13:7000"}]
timeouts: {drain: 0s}
Y
  if [ "$1" != none ]; then
    cat <<Y
vip: {interface: eth0, vrid: 51, addresses: ["$VIP/24"], priority: $1, advertInterval: ${ADV_MS}ms}
Y
  fi
}
ka_conf() { # $1 node $2 priority
  cat <<K
global_defs { vrrp_version 3
  router_id n$1 }
vrrp_instance VI { state BACKUP
  interface eth0
  virtual_router_id 51
  priority $2
  advert_int $ADV
  virtual_ipaddress { $VIP/24 } }
K
}

start() { # $1 impl $2 node $3 priority; sets PID_<node> (the VRRP speaker) and LB_<node>
  local i=$2
  if [ "$1" = apilb ]; then
    lb_yaml "$3" > "$WORK/lb$i.yaml"
    ip netns exec $P-n$i "$APILB" serve --config "$WORK/lb$i.yaml" > "$WORK/lb$i.log" 2>&1 &
    eval "SPK_$i=$!; LB_$i=$!"
  else
    lb_yaml none > "$WORK/lb$i.yaml"
    ip netns exec $P-n$i "$APILB" serve --config "$WORK/lb$i.yaml" > "$WORK/lb$i.log" 2>&1 &
    eval "LB_$i=$!"
    ka_conf "$i" "$3" > "$WORK/ka$i.conf"
    rm -f "$WORK/ka$i.pid" "$WORK/kav$i.pid"
    ip netns exec $P-n$i keepalived -n -l -P -f "$WORK/ka$i.conf" -p "$WORK/ka$i.pid" -r "$WORK/kav$i.pid" > "$WORK/ka$i.log" 2>&1 &
    eval "SPK_$i=$!"
  fi
}
stop_all() {
  for i in 1 2; do
    for v in SPK_$i LB_$i; do
      local p=${!v:-}
      [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
    done
  done
  sleep 0.2
  for i in 1 2; do ip netns pids $P-n$i | grep -v "^$" | xargs -r kill -9 2>/dev/null || true
    ip -n $P-n$i addr del $VIP/24 dev eth0 2>/dev/null || true; ip -n $P-n$i link set eth0 up; done
  sleep 0.2
}
has_vip() { ip -n $P-n$1 -4 -o addr show dev eth0 | grep -q "inet $VIP/"; }
now_ms() { date +%s%3N; }

client() { # runs in n3 until killed; writes "ms ok|fail" lines
  ip netns exec $P-n3 python3 -u -c '
import socket, time, sys
while True:
    t=time.time()
    try:
        s=socket.create_connection(("'$VIP'",6443), timeout=0.1); s.settimeout(0.1)
        ok = s.recv(3)==b"ok\n"; s.close()
    except Exception:
        ok=False
    print("%d %s" % (t*1000, "ok" if ok else "fail")); sys.stdout.flush()
    time.sleep(0.005)' > "$1" &
  CLIENT=$!
}

declare -A RES
run_one() { # $1 impl $2 mode
  start "$1" 1 150; sleep 0.3; start "$1" 2 100
  local d=0; until has_vip 1 && ! has_vip 2; do sleep 0.05; d=$((d+1)); [ $d -gt 100 ] && { echo "n1 never master" >&2; cat "$WORK"/lb*.log "$WORK"/ka*.log >&2 2>/dev/null; return 1; }; done
  sleep 1.5
  client "$WORK/client.log"; sleep 0.5
  local t0
  case $2 in
    kill) local victims="$SPK_1"; [ "$1" = apilb ] || victims="$victims $(cat "$WORK/kav1.pid")"  # the VRRP child too
          t0=$(now_ms); kill -9 $victims ;;
    term) t0=$(now_ms); kill -TERM "$SPK_1" ;;
    linkdown) t0=$(now_ms); ip -n $P-n1 link set eth0 down ;;
  esac
  until has_vip 2; do :; done
  local t1; t1=$(now_ms)
  sleep 1.5
  kill "$CLIENT" 2>/dev/null || true; wait "$CLIENT" 2>/dev/null || true
  local gap; gap=$(python3 - "$WORK/client.log" "$t0" <<'PY'
import sys
t0=int(sys.argv[2]); oks=[int(l.split()[0]) for l in open(sys.argv[1]) if l.strip().endswith("ok")]
before=[t for t in oks if t<t0]; after=[t for t in oks if t>=t0]
if not before or not after: print("nan"); sys.exit()
prev=before[-1]; worst=0
for t in after:
    worst=max(worst,t-prev); prev=t
print(worst)
PY
)
  RES[$1,$2]+="$((t1-t0)) "
  RES[$1,$2,gap]+="$gap "
  stop_all
}

stats() { python3 -c "
import statistics,sys
v=sorted(float(x) for x in sys.argv[1:] if x!='nan')
print('%6.0f %6.0f %6.0f' % (v[0], statistics.median(v), v[-1]) if v else '   n/a')" $1; }

for mode in kill term linkdown; do
  for impl in apilb keepalived; do
    for r in $(seq "$RUNS"); do run_one $impl $mode; done
  done
done

echo "advert interval ${ADV_MS} ms, priorities 150/100, $RUNS runs each (ms: min median max)"
printf '%-9s %-11s %-22s %-22s\n' mode impl "VIP on backup" "client outage"
for mode in kill term linkdown; do
  for impl in apilb keepalived; do
    printf '%-9s %-11s %-22s %-22s\n' $mode $impl "$(stats "${RES[$impl,$mode]}")" "$(stats "${RES[$impl,$mode,gap]}")"
  done
done
