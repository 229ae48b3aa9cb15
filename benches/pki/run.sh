#!/bin/sh
# Time `apilb issue` for the full 3-master PKI of config/cluster.yaml (3 CAs, SA key pair,
# 7 leaves + 5 kubeconfig client certificates per master, 2 LB health-client certificates:
# 42 keys, 41 certificates) per key algorithm, side by side with cfssl generating the same
# set of keys and certificates (same CN/O, usages and SANs). Not a CI gate.
#
# Usage: benches/pki/run.sh [RUNS]        (default 3 runs per cell; the median is reported)
# Needs: cfssl and cfssljson (Debian: golang-cfssl). APILB_BIN overrides the binary
# (default: target/release/apilb, built with `cargo build --release`).
# ALGS limits the algorithms, e.g. ALGS="ECDSA-P256:ecdsa:256".
# Output: a markdown table on stdout.
set -eu

RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${APILB_BIN:-$ROOT/target/release/apilb}
if [ -z "${APILB_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin apilb)
fi
command -v cfssl >/dev/null && command -v cfssljson >/dev/null || {
    echo "cfssl/cfssljson not found (apt-get install golang-cfssl)" >&2
    exit 1
}
WORK=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }

# cfssl: the same tree for one algorithm into $1. $2 = cfssl key algo, $3 = size.
cfssl_tree() {
    out=$1 algo=$2 size=$3
    mkdir -p "$out"
    cd "$out"
    cat > config.json <<JSON
{"signing": {"default": {"expiry": "8760h"}, "profiles": {
  "server": {"expiry": "8760h", "usages": ["digital signature", "key encipherment", "server auth"]},
  "client": {"expiry": "8760h", "usages": ["digital signature", "key encipherment", "client auth"]},
  "peer":   {"expiry": "8760h", "usages": ["digital signature", "key encipherment", "server auth", "client auth"]}}}}
JSON
    key="\"key\": {\"algo\": \"$algo\", \"size\": $size}"
    for ca in kubernetes front-proxy-ca etcd-ca; do
        echo "{\"CN\": \"$ca\", $key, \"ca\": {\"expiry\": \"87600h\"}}" > "$ca-csr.json"
        cfssl gencert -loglevel 5 -initca "$ca-csr.json" | cfssljson -bare "$ca"
    done
    echo "{\"CN\": \"sa\", $key}" > sa.json
    cfssl genkey -loglevel 5 sa.json | cfssljson -bare sa
    # gen NAME CA PROFILE CN ORG HOSTS
    gen() {
        if [ -n "$5" ]; then names="\"names\": [{\"O\": \"$5\"}],"; else names=""; fi
        echo "{\"CN\": \"$4\", $names $key}" > "$1.json"
        cfssl gencert -loglevel 5 -ca "$2.pem" -ca-key "$2-key.pem" -config config.json \
            -profile "$3" -hostname "$6" "$1.json" | cfssljson -bare "$1"
    }
    for n in 1 2 3; do
        m=master-$n addr=10.0.0.1$n
        gen "$m-apiserver" kubernetes server kube-apiserver "" \
            "$m,kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.cluster.local,k8s-api.example.internal,10.96.0.1,$addr,10.0.0.100,10.0.0.5,10.0.0.6"
        gen "$m-apiserver-kubelet-client" kubernetes client kube-apiserver-kubelet-client kubeadm:cluster-admins ""
        gen "$m-front-proxy-client" front-proxy-ca client front-proxy-client "" ""
        gen "$m-apiserver-etcd-client" etcd-ca client kube-apiserver-etcd-client "" ""
        gen "$m-etcd-server" etcd-ca peer "$m" "" "$m,localhost,$addr,127.0.0.1,::1"
        gen "$m-etcd-peer" etcd-ca peer "$m" "" "$m,localhost,$addr,127.0.0.1,::1"
        gen "$m-etcd-healthcheck-client" etcd-ca client kube-etcd-healthcheck-client "" ""
        gen "$m-admin" kubernetes client kubernetes-admin kubeadm:cluster-admins ""
        gen "$m-super-admin" kubernetes client kubernetes-super-admin system:masters ""
        gen "$m-controller-manager" kubernetes client system:kube-controller-manager "" ""
        gen "$m-scheduler" kubernetes client system:kube-scheduler "" ""
        gen "$m-kubelet" kubernetes client "system:node:$m" system:nodes ""
    done
    for n in 1 2; do gen "lb-$n-apilb-health" kubernetes client apilb-health "" ""; done
    cd - >/dev/null
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| algorithm | apilb issue (s) | cfssl (s) | cfssl / apilb |"
echo "|---|---:|---:|---:|"
for spec in ${ALGS:-RSA-2048:rsa:2048 RSA-3072:rsa:3072 RSA-4096:rsa:4096 ECDSA-P256:ecdsa:256 ECDSA-P384:ecdsa:384}; do
    alg=${spec%%:*} rest=${spec#*:} algo=${rest%%:*} size=${rest#*:}
    sed "s/encryptionAlgorithm: RSA-2048/encryptionAlgorithm: $alg/" "$ROOT/config/cluster.yaml" > "$WORK/cluster-$alg.yaml"
    ta=$WORK/a-$alg.txt tc=$WORK/c-$alg.txt
    : > "$ta"; : > "$tc"
    i=0
    while [ $i -lt "$RUNS" ]; do
        i=$((i + 1))
        t0=$(now); "$BIN" issue --cluster "$WORK/cluster-$alg.yaml" --out "$WORK/apilb-$alg-$i" >/dev/null; t1=$(now)
        echo "$t1 - $t0" | bc >> "$ta"
        t0=$(now); cfssl_tree "$WORK/cfssl-$alg-$i" "$algo" "$size" 2>/dev/null; t1=$(now)
        echo "$t1 - $t0" | bc >> "$tc"
    done
    ma=$(median < "$ta") mc=$(median < "$tc")
    printf '| %s | %.2f | %.2f | %.1fx |\n' "$alg" "$ma" "$mc" "$(echo "$mc / $ma" | bc -l)"
done
echo
echo "Median of $RUNS runs; $(nproc) CPUs; apilb $("$BIN" --version | cut -d' ' -f2), $(cfssl version | head -1)."
