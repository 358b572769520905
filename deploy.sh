#!/usr/bin/env bash
# Deploy Tributary to Google Cloud. Not finished yet: see README "Deploying" (issue: scheduling and deployment).
set -euo pipefail
echo "deploy.sh: deployment is not implemented yet; nothing was changed." >&2
echo "Track progress in the project's issue 'Scheduling, backfills and deployment'." >&2
exit 2
