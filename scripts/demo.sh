#!/usr/bin/env bash
# A whole rotation through the installed kmsguard command, against a moto
# server and a local CloudTrail server on 127.0.0.1, and a real SQLite file
# under ./demo. Nothing leaves this machine: the credentials are fake and every
# AWS call goes to moto, except CloudTrail LookupEvents, which moto lacks and
# tests/cloudtrail_server.py serves from a fixture.
set -euo pipefail
BIN=${1:-.venv/bin}
BIN=$(cd "$BIN" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(pwd)/demo
rm -rf "$WORK" && mkdir -p "$WORK"

PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
echo '{"events": []}' >"$WORK/cloudtrail.json"
"$BIN/python" "$ROOT/tests/cloudtrail_server.py" --port 0 --events "$WORK/cloudtrail.json" \
  >"$WORK/cloudtrail.url" 2>"$WORK/cloudtrail.log" &
CLOUDTRAIL_PID=$!
trap 'kill $MOTO_PID $CLOUDTRAIL_PID 2>/dev/null || true' EXIT

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=eu-west-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN KMSGUARD_REGION
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export KMSGUARD_DB=$WORK/kmsguard.db KMSGUARD_OPERATOR=demo-operator NO_COLOR=1

for _ in $(seq 50); do
  curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && [ -s "$WORK/cloudtrail.url" ] && break
  sleep 0.1
done
AWS_ENDPOINT_URL_CLOUDTRAIL=$(head -n 1 "$WORK/cloudtrail.url")
export AWS_ENDPOINT_URL_CLOUDTRAIL
# The fixture server delivers each event at once. AWS CloudTrail takes up to
# 20 minutes, and a disable step waits that long after support's confirmation.
export KMSGUARD_CLOUDTRAIL_DELAY=0

step() { printf '\n\033[1m$ kmsguard %s\033[0m\n' "$*"; "$BIN/kmsguard" "$@"; }
expect_refusal() {
  printf '\n\033[1m$ kmsguard %s\033[0m   (expected: refused, exit 3)\n' "$*"
  set +e; "$BIN/kmsguard" "$@"; rc=$?; set -e
  [ "$rc" -eq 3 ] || { echo "expected exit 3, got $rc" >&2; exit 1; }
}

echo "== The pipeline's current key (created here to stand in for yours)"
OLD_KEY=$("$BIN/python" - <<'PY'
import boto3
kms = boto3.client("kms")
arn = kms.create_key(Description="pipeline key in use", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False)["KeyMetadata"]["Arn"]
kms.create_alias(AliasName="alias/pipeline-current", TargetKeyId=arn)
print(arn)
PY
)
echo "$OLD_KEY"

step env add prod --region eu-west-1 --pipeline-account 210987654321
step rotation start prod --current-key alias/pipeline-current
expect_refusal rotation new-key prod --key alias/pipeline-current
step rotation new-key prod --create --alias alias/pipeline-2026
step rotation apply-policy prod --dry-run
step rotation apply-policy prod
step rotation contact-support prod --ticket SUP-1234
expect_refusal rotation disable-old-key prod --yes
step rotation confirm prod --ticket SUP-1234 --confirmed-by "Sam Lee (vendor support)" --message "Pipeline switched to the new key; old key no longer referenced."

echo
echo "== Support confirmed, but an enrich job still decrypts with the old key."
echo "== CloudTrail records its Decrypt calls (events from 25 to 85 minutes ago)."
OLD_KEY=$OLD_KEY "$BIN/python" - >"$WORK/cloudtrail.json" <<'PY'
import json, os
from datetime import UTC, datetime, timedelta

key = os.environ["OLD_KEY"]
stream = "arn:aws:kinesis:eu-west-1:210987654321:stream/enriched-good"
events = []
for minutes in (25, 40, 55, 70, 85):
    when = datetime.now(UTC) - timedelta(minutes=minutes)
    events.append({"CloudTrailEvent": {
        "eventID": f"demo-decrypt-{minutes}",
        "eventName": "Decrypt",
        "eventSource": "kms.amazonaws.com",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": "210987654321",
            "arn": "arn:aws:sts::210987654321:assumed-role/pipeline-enrich/i-0demo",
        },
        "userAgent": "aws-sdk-java/2.20",
        "requestParameters": {"keyId": key, "encryptionContext": {"aws:kinesis:arn": stream}},
        "resources": [{"ARN": key, "type": "AWS::KMS::Key"}],
        "readOnly": True,
    }})
print(json.dumps({"events": events}))
PY
expect_refusal evidence prod
expect_refusal rotation disable-old-key prod --yes

echo
echo "== The enrich job is redeployed with the new key: no more calls on the old key."
curl -sf -X POST -H 'Content-Type: application/json' -d '{"events": []}' "$AWS_ENDPOINT_URL_CLOUDTRAIL/fixture"
step evidence prod
step rotation disable-old-key prod --yes

echo
echo "== Deletion waits until the key has stayed disabled, unused, for an observation period."
expect_refusal rotation schedule-deletion prod --window-days 7 --yes
step rotation schedule-deletion prod --window-days 7 --observation-days 1 \
  --accept-risk "demo: the key was disabled seconds ago; a real rotation waits out the observation period" --yes
step rotation complete prod
step status
step history prod
step audit verify
echo
echo "Demo finished: the state and audit log are in $KMSGUARD_DB"
