#!/usr/bin/env bash
# Deploys this run's build (the sam-build.tgz of the release workflow's build job) to one stage:
#   1. the archive must be the one the build job made (its sha256), so every stage runs the same code;
#   2. sam package uploads its code to the stage's artifacts bucket (pipeline/roles.yaml);
#   3. sam deploy creates and executes a change set with the stage's CloudFormation execution role;
#   4. the packaged template is kept in the bucket under releases/<commit>/, for a rollback by hand
#      (docs/deploy.md);
#   5. when the stack hosts the lore explorer (LoreExplorer=true), this commit's cli/explorer/ is uploaded
#      to its site bucket and the distribution's cache invalidated (cli/kb_explorer_publish.py).
# Usage: pipeline/deploy.sh CONFIG_ENV        (samconfig.toml's `staging` or `prod`)
# Environment: ARTIFACT (path of sam-build.tgz), ARTIFACT_DIGEST, ARTIFACTS_BUCKET,
#   CLOUDFORMATION_EXECUTION_ROLE, STACK_PARAMETERS (the stage's overrides beyond samconfig.toml's, e.g.
#   "VpcId=vpc-... PrivateSubnetIds=subnet-a,subnet-b"; values without spaces), GITHUB_SHA, GITHUB_OUTPUT.
set -euo pipefail

config_env="${1:?usage: pipeline/deploy.sh CONFIG_ENV}"
: "${ARTIFACT:?}" "${ARTIFACT_DIGEST:?}" "${ARTIFACTS_BUCKET:?}" "${CLOUDFORMATION_EXECUTION_ROLE:?}"
: "${GITHUB_SHA:?}" "${GITHUB_OUTPUT:?}"
repo_root="$(cd "$(dirname "$0")/.." && pwd)"

actual="$(sha256sum "$ARTIFACT" | cut -d' ' -f1)"
if [[ "$actual" != "$ARTIFACT_DIGEST" ]]; then
  echo "::error::$ARTIFACT is not the build job's archive (sha256 $actual, expected $ARTIFACT_DIGEST)"
  exit 1
fi

# The stage's stack name and parameter overrides, from samconfig.toml.
setting() {
  python3 - "$repo_root/samconfig.toml" "$config_env" "$1" "$2" <<'PY'
import sys, tomllib

path, env, command, key = sys.argv[1:]
with open(path, "rb") as f:
    print(tomllib.load(f)[env][command]["parameters"][key])
PY
}
stack_name="$(setting global stack_name)"
read -r -a overrides <<< "$(setting deploy parameter_overrides) ${STACK_PARAMETERS:-}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$ARTIFACT" -C "$work"

# Run where no samconfig.toml is: the packaged template is all that is deployed, every setting is here.
cd "$work/build"
sam package \
  --template-file template.yaml \
  --s3-bucket "$ARTIFACTS_BUCKET" --s3-prefix "$stack_name" --no-resolve-s3 \
  --language-extensions --no-progressbar \
  --output-template-file "$work/packaged.yaml"
sam deploy \
  --template-file "$work/packaged.yaml" \
  --stack-name "$stack_name" \
  --s3-bucket "$ARTIFACTS_BUCKET" --s3-prefix "$stack_name" --no-resolve-s3 \
  --role-arn "$CLOUDFORMATION_EXECUTION_ROLE" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --language-extensions --no-confirm-changeset --no-fail-on-empty-changeset --no-progressbar \
  --tags "release=$GITHUB_SHA" \
  --parameter-overrides "${overrides[@]}"

# Only boto3 is needed (sam's own); the site's config.js is kept, or written for the stack's API if absent.
explorer_bucket="$(aws cloudformation describe-stacks --stack-name "$stack_name" \
  --query "Stacks[0].Outputs[?OutputKey=='ExplorerBucketName'].OutputValue" --output text)"
if [[ -n "$explorer_bucket" && "$explorer_bucket" != "None" ]]; then
  (cd "$repo_root" && python3 -m cli.kb_explorer_publish --stack-name "$stack_name")
fi

release="s3://$ARTIFACTS_BUCKET/$stack_name/releases/$GITHUB_SHA/packaged.yaml"
aws s3 cp --only-show-errors "$work/packaged.yaml" "$release"
{
  echo "stack=$stack_name"
  echo "release=$release"
} >> "$GITHUB_OUTPUT"
echo "deployed $GITHUB_SHA to $stack_name; packaged template: $release"
