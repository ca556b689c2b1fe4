#!/usr/bin/env bash
# Stands galleon up (or upgrades it) in a resource group with one command: the Bicep in infra/, the
# release package (scripts/package.sh) deployed to the function app, then the Event Grid subscriptions to
# the functions, which Event Grid accepts only once the functions exist (infra/README.md, "Deploy").
#   scripts/deploy.sh <resource group> [parameters file]   (default infra/main.parameters.json)
# Needs the Azure CLI, logged in (`az login`), with rights to create role definitions and assignments.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ $# -lt 1 ]; then
  echo "usage: scripts/deploy.sh <resource group> [parameters file]" >&2
  exit 2
fi
rg=$1
params=${2:-infra/main.parameters.json}
[ -f "$params" ] || { echo "deploy: $params is missing: cp infra/main.parameters.example.json $params, then edit it" >&2; exit 2; }
command -v az >/dev/null || { echo "deploy: the Azure CLI (az) is missing: https://learn.microsoft.com/cli/azure/install-azure-cli" >&2; exit 2; }

echo "deploy: 1/3 infrastructure (without the Event Grid subscriptions to the functions)" >&2
outputs=$(az deployment group create -g "$rg" -f infra/main.bicep -p "@$params" \
  -p createEventSubscriptions=false --query properties.outputs -o json)
value() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]]["value"])' "$1" <<<"$outputs"; }
app=$(value functionAppName)
plan=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])).get("parameters",{}); print(p.get("hostingPlan",{}).get("value","FlexConsumption"))' "$params")

echo "deploy: 2/3 the release package to $app ($plan)" >&2
zip=$(bash scripts/package.sh)
if [ "$plan" = ElasticPremium ]; then
  # Elastic Premium runs from the package blob (no Azure Files share, so no storage key).
  az storage blob upload --auth-mode login --account-name "$(value storageAccountName)" -c app-package \
    -n galleon-package.zip -f "$zip" --overwrite --only-show-errors >/dev/null
  az functionapp restart -g "$rg" -n "$app" --only-show-errors
else
  az functionapp deployment source config-zip -g "$rg" -n "$app" --src "$zip" --only-show-errors >/dev/null
fi

echo "deploy: 3/3 the Event Grid subscriptions to the functions" >&2
az deployment group create -g "$rg" -f infra/main.bicep -p "@$params" --only-show-errors -o none
echo "deploy: galleon runs as $app; subscribers read $(value eventsTopicEndpoint)" >&2
