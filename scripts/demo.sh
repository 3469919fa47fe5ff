#!/usr/bin/env bash
# A whole rotation through the installed kmsguard command, against a moto
# server on 127.0.0.1 and a real SQLite file under ./demo. Nothing leaves
# this machine: the credentials are fake and every AWS call goes to moto.
set -euo pipefail
BIN=${1:-.venv/bin}
BIN=$(cd "$BIN" && pwd)
WORK=$(pwd)/demo
rm -rf "$WORK" && mkdir -p "$WORK"

PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=eu-west-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN KMSGUARD_REGION
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export KMSGUARD_DB=$WORK/kmsguard.db KMSGUARD_OPERATOR=demo-operator NO_COLOR=1

for _ in $(seq 50); do
  curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
  sleep 0.1
done

step() { printf '\n\033[1m$ kmsguard %s\033[0m\n' "$*"; "$BIN/kmsguard" "$@"; }
expect_refusal() {
  printf '\n\033[1m$ kmsguard %s\033[0m   (expected: refused, exit 3)\n' "$*"
  set +e; "$BIN/kmsguard" "$@"; rc=$?; set -e
  [ "$rc" -eq 3 ] || { echo "expected exit 3, got $rc" >&2; exit 1; }
}

echo "== The pipeline's current key (created here to stand in for yours)"
"$BIN/python" - <<'PY'
import boto3
kms = boto3.client("kms")
arn = kms.create_key(Description="pipeline key in use", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False)["KeyMetadata"]["Arn"]
kms.create_alias(AliasName="alias/pipeline-current", TargetKeyId=arn)
print(arn)
PY

step env add prod --region eu-west-1 --pipeline-account 210987654321
step rotation start prod --current-key alias/pipeline-current
expect_refusal rotation new-key prod --key alias/pipeline-current
step rotation new-key prod --create --alias alias/pipeline-2026
step rotation apply-policy prod --dry-run
step rotation apply-policy prod
step rotation contact-support prod --ticket SUP-1234
expect_refusal rotation disable-old-key prod --yes
step rotation confirm prod --ticket SUP-1234 --confirmed-by "Sam Lee (vendor support)" --message "Pipeline switched to the new key; old key no longer referenced."
step rotation disable-old-key prod --yes
step rotation schedule-deletion prod --window-days 7 --yes
step rotation complete prod
step status
step history prod
step audit verify
echo
echo "Demo finished: the state and audit log are in $KMSGUARD_DB"
