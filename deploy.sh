#!/usr/bin/env bash
# Deploy Tributary to Google Cloud: create what is missing, update what exists. Safe to re-run.
#
#   ./deploy.sh --project P --region R [--dry-run] [--bucket B] [--sources a,b] [options]
#
# Per-source facts (queues and their limits, function memory and timeout, secrets, schedules) come
# from the Python registry through `python -m common.ops.deploy_plan`; this script owns the gcloud
# commands and the IAM model. See docs/deploy.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy.sh --project P --region R [options]

Creates or updates, idempotently: the APIs, the service accounts and their roles, the bucket, the
Firestore database and indexes, one Cloud Tasks queue and one ingest function per source, the
ingest-events topic with its dead-letter topic and push subscription, the api and status functions,
and the Cloud Scheduler jobs (tributary schedule sync --prune).

Required:
  --project P              Google Cloud project id
  --region R               region of the functions, queues and schedules (e.g. europe-west1)

Options:
  --dry-run                print every command (one per line, prefixed "+ ") and change nothing
  --bucket B               output bucket (default: <project>-tributary), created if missing
  --sources a,b            deploy only these sources' queues and ingest functions (shared parts too)
  --project-number N       skip looking the project number up (lets --dry-run show real URLs)
  --firestore-location L   location of a new Firestore database (default: the region)
  --api-invoker MEMBER     also let MEMBER call the api (repeatable), e.g. serviceAccount:n8n@x.iam.gserviceaccount.com
  --api-keys-secret NAME   Secret Manager secret holding TRIBUTARY_API_KEYS (hashed keys for X-API-Key callers)
  --public-api             let requests without a Google ID token reach the api (X-API-Key callers such as n8n);
                           the api still authenticates every request itself (TRIBUTARY_AUTH=on)
  --build-service-account projects/P/serviceAccounts/EMAIL
                           service account Cloud Build uses to build the functions
  --schedule-config FILE   per-deployment schedule overrides (TOML), passed to `tributary schedule sync`
  --no-schedules           do not sync Cloud Scheduler
  -h, --help               this help

Environment: TRIBUTARY_PYTHON (default: .venv/bin/python, else python3); TRIBUTARY_RETENTION_DAYS (days
jobs, event markers and parts are kept before Firestore's TTL deletes them; default 90).
EOF
}

die_usage() {
  printf 'deploy.sh: %s\n' "$1" >&2
  printf 'Run "deploy.sh --help" for usage.\n' >&2
  exit 2
}

die() {
  printf 'deploy.sh: %s\n' "$1" >&2
  exit 1
}

# ------------------------------------------------------------------------------------------ options
PROJECT=""
REGION=""
DRY_RUN=0
BUCKET_OPT=""
SOURCES_OPT=""
PROJECT_NUMBER_OPT=""
FIRESTORE_LOCATION=""
BUILD_SA=""
SCHEDULE_CONFIG=""
SCHEDULES=1
PUBLIC_API=0
API_KEYS_SECRET=""
API_INVOKERS=()

need_value() {
  # $1 option, $2 number of remaining arguments, $3 the value
  if [[ "$2" -lt 2 || -z "$3" || "$3" == --* ]]; then
    die_usage "$1 needs a value"
  fi
}

while [[ $# -gt 0 ]]; do
  opt="$1"
  value=""
  case "$opt" in
    --*=*)
      value="${opt#*=}"
      opt="${opt%%=*}"
      [[ -n "$value" ]] || die_usage "$opt needs a value"
      set -- "$opt" "$value" "${@:2}"
      ;;
  esac
  case "$opt" in
    -h | --help)
      usage
      exit 0
      ;;
    --dry-run)
      DRY_RUN=1
      shift
      ;;
    --no-schedules)
      SCHEDULES=0
      shift
      ;;
    --public-api)
      PUBLIC_API=1
      shift
      ;;
    --project | --region | --bucket | --sources | --project-number | --firestore-location | \
      --api-invoker | --api-keys-secret | --build-service-account | --schedule-config)
      need_value "$opt" "$#" "${2-}"
      case "$opt" in
        --project) PROJECT="$2" ;;
        --region) REGION="$2" ;;
        --bucket) BUCKET_OPT="$2" ;;
        --sources) SOURCES_OPT="$2" ;;
        --project-number) PROJECT_NUMBER_OPT="$2" ;;
        --firestore-location) FIRESTORE_LOCATION="$2" ;;
        --api-invoker) API_INVOKERS+=("$2") ;;
        --api-keys-secret) API_KEYS_SECRET="$2" ;;
        --build-service-account) BUILD_SA="$2" ;;
        --schedule-config) SCHEDULE_CONFIG="$2" ;;
      esac
      shift 2
      ;;
    *) die_usage "unknown argument: $opt" ;;
  esac
done

[[ -n "$PROJECT" ]] || die_usage "missing --project"
[[ -n "$REGION" ]] || die_usage "missing --region"
[[ "$PROJECT" =~ ^[a-z0-9.:-]+$ ]] || die_usage "--project $PROJECT is not a project id"
[[ "$REGION" =~ ^[a-z0-9-]+$ ]] || die_usage "--region $REGION is not a region"
[[ -z "$PROJECT_NUMBER_OPT" || "$PROJECT_NUMBER_OPT" =~ ^[0-9]+$ ]] ||
  die_usage "--project-number must be digits"
API_SERVICE_ACCOUNTS="" # the --api-invoker service accounts, which common.runtime.auth must also accept
for member in ${API_INVOKERS[@]+"${API_INVOKERS[@]}"}; do
  [[ "$member" == *:* ]] || die_usage "--api-invoker $member must look like serviceAccount:EMAIL, user:EMAIL or group:EMAIL"
  [[ "$member" != serviceAccount:* ]] || API_SERVICE_ACCOUNTS+="${API_SERVICE_ACCOUNTS:+,}${member#serviceAccount:}"
done
if [[ -n "$SCHEDULE_CONFIG" ]]; then
  [[ -f "$SCHEDULE_CONFIG" ]] || die_usage "--schedule-config $SCHEDULE_CONFIG is not a file"
  SCHEDULE_CONFIG="$(cd "$(dirname "$SCHEDULE_CONFIG")" && pwd)/$(basename "$SCHEDULE_CONFIG")"
fi
FIRESTORE_LOCATION="${FIRESTORE_LOCATION:-$REGION}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"
if [[ -n "${TRIBUTARY_PYTHON:-}" ]]; then
  PYTHON="$TRIBUTARY_PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
  PYTHON="$REPO/.venv/bin/python"
else
  PYTHON="python3"
fi
TRIBUTARY_CLI="$(dirname "$PYTHON")/tributary"
[[ -x "$TRIBUTARY_CLI" ]] || TRIBUTARY_CLI="tributary"

# ------------------------------------------------------------------------------------------ running
SAFE_WORD='^[A-Za-z0-9_@%+=:,./-]+$'

# quote ARG...: the arguments as one shell-safe line (copy-pasteable).
quote() {
  local out="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ $SAFE_WORD ]]; then
      out+="$arg "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

# say TEXT: progress for people, on stderr (stdout carries only commands in --dry-run).
say() {
  printf '\n== %s\n' "$*" >&2
}

# show LINE: a command line, on stdout in --dry-run, on stderr when running for real.
show() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$1"
  else
    printf '+ %s\n' "$1" >&2
  fi
}

# run CMD...: print it; run it unless --dry-run.
run() {
  show "$(quote "$@")"
  ((DRY_RUN)) || "$@"
}

# run_retry CMD...: IAM changes that may race a service account created seconds ago.
run_retry() {
  show "$(quote "$@")"
  ((DRY_RUN)) && return 0
  local attempt
  for attempt in 1 2 3 4 5; do
    if "$@"; then
      return 0
    fi
    printf 'deploy.sh: attempt %s failed; retrying in %s s\n' "$attempt" "$((attempt * 5))" >&2
    sleep "$((attempt * 5))"
  done
  die "giving up on: $(quote "$@")"
}

# ensure: if DESCRIBE succeeds, run UPDATE (when given), else run CREATE. Set the three arrays first.
DESCRIBE=()
CREATE=()
UPDATE=()
ensure() {
  if ((DRY_RUN)); then
    if ((${#UPDATE[@]})); then
      show "if $(quote "${DESCRIBE[@]}") >/dev/null 2>&1; then $(quote "${UPDATE[@]}"); else $(quote "${CREATE[@]}"); fi"
    else
      show "$(quote "${DESCRIBE[@]}") >/dev/null 2>&1 || $(quote "${CREATE[@]}")"
    fi
  elif "${DESCRIBE[@]}" >/dev/null 2>&1; then
    if ((${#UPDATE[@]})); then
      run "${UPDATE[@]}"
    else
      printf '  exists: %s\n' "$(quote "${DESCRIBE[@]}")" >&2
    fi
  else
    run "${CREATE[@]}"
  fi
  DESCRIBE=()
  CREATE=()
  UPDATE=()
}

# run_unless_exists CMD...: a create whose "already exists" answer is success.
run_unless_exists() {
  if ((DRY_RUN)); then
    show "$(quote "$@")  # ALREADY_EXISTS counts as done"
    return 0
  fi
  show "$(quote "$@")"
  local err
  if err="$("$@" 2>&1 >/dev/null)"; then
    return 0
  fi
  case "$err" in
    *ALREADY_EXISTS* | *"already exists"*) printf '  already exists\n' >&2 ;;
    *)
      printf '%s\n' "$err" >&2
      die "failed: $(quote "$@")"
      ;;
  esac
}

# make_plan NUMBER: the deployment plan from the Python registry into $PLAN (exit 2 on bad input).
make_plan() {
  local args=(--format shell --project "$PROJECT" --region "$REGION" --project-number "$1") status=0
  [[ -z "$BUCKET_OPT" ]] || args+=(--bucket "$BUCKET_OPT")
  [[ -z "$SOURCES_OPT" ]] || args+=(--sources "$SOURCES_OPT")
  [[ -z "$API_SERVICE_ACCOUNTS" ]] || args+=(--api-service-accounts "$API_SERVICE_ACCOUNTS")
  [[ -z "$API_KEYS_SECRET" ]] || args+=(--api-keys-secret "$API_KEYS_SECRET")
  PLAN="$("$PYTHON" -m common.ops.deploy_plan "${args[@]}")" || status=$?
  if ((status == 2)); then
    exit 2 # deploy_plan said why (an unknown source, a name Google refuses)
  elif ((status != 0)); then
    die "python -m common.ops.deploy_plan failed (exit $status); is $PYTHON the project's virtualenv?"
  fi
}

# Check the plan (source names, limits) before changing anything.
PLAN=""
make_plan "${PROJECT_NUMBER_OPT:-PROJECT_NUMBER}"

if ((DRY_RUN)); then
  printf 'deploy.sh: dry run for project %s in %s: nothing is changed\n' "$PROJECT" "$REGION" >&2
else
  command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)"
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
fi

# --------------------------------------------------------------------------------------------- APIs
say "APIs"
run gcloud services enable --project="$PROJECT" \
  cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com artifactregistry.googleapis.com \
  cloudtasks.googleapis.com cloudscheduler.googleapis.com pubsub.googleapis.com firestore.googleapis.com \
  secretmanager.googleapis.com storage.googleapis.com iam.googleapis.com cloudresourcemanager.googleapis.com \
  logging.googleapis.com bigquery.googleapis.com

# ---------------------------------------------------------------------------------- project number
say "project number"
NUMBER_CMD=(gcloud projects describe "$PROJECT" --format=value\(projectNumber\))
if [[ -n "$PROJECT_NUMBER_OPT" ]]; then
  PROJECT_NUMBER="$PROJECT_NUMBER_OPT"
elif ((DRY_RUN)); then
  show "$(quote "${NUMBER_CMD[@]}")"
  PROJECT_NUMBER="PROJECT_NUMBER"
else
  show "$(quote "${NUMBER_CMD[@]}")"
  PROJECT_NUMBER="$("${NUMBER_CMD[@]}")"
  [[ "$PROJECT_NUMBER" =~ ^[0-9]+$ ]] || die "could not read the number of project $PROJECT"
  make_plan "$PROJECT_NUMBER"
fi

BUCKET="" OUTPUT_URI="" RUNTIME="" SA_API="" SA_INGEST="" SA_STATUS="" SA_INVOKER="" PUBSUB_AGENT=""
TOPIC="" DEAD_TOPIC="" SUBSCRIPTION="" DEAD_SUBSCRIPTION="" MAX_DELIVERY_ATTEMPTS="" ACK_DEADLINE="" MESSAGE_ORDERING=""
API_FUNCTION="" STATUS_FUNCTION="" API_URL="" PUSH_ENDPOINT="" PUSH_AUDIENCE="" INGEST_URL=""
SA_LOAD="" LOAD_FUNCTION="" LOAD_SUBSCRIPTION="" LOAD_PUSH_ENDPOINT="" LOAD_PUSH_AUDIENCE="" DATASET="" DATASET_LOCATION=""
Q_NAME=() Q_RATE=() Q_CONCURRENT=() Q_ATTEMPTS=() Q_MIN_BACKOFF=() Q_MAX_BACKOFF=() Q_DOUBLINGS=()
F_KIND=() F_NAME=() F_ENTRY=() F_MEMORY=() F_TIMEOUT=() F_MAX=() F_ENV=() F_SECRETS=()
S_NAME=() S_SOURCE=() S_ACCOUNT=() IX_COLLECTION=() IX_FIELDS=() SCHEDULE_LINES=() TTL_GROUP=() TTL_FIELD=() NOIX_GROUP=() NOIX_FIELD=()
while IFS=$'\t' read -r kind f1 f2 f3 f4 f5 f6 f7 f8 f9; do
  case "$kind" in
    const)
      case "$f1" in
        bucket) BUCKET="$f2" ;;
        output_uri) OUTPUT_URI="$f2" ;;
        runtime) RUNTIME="$f2" ;;
        sa_api) SA_API="$f2" ;;
        sa_ingest) SA_INGEST="$f2" ;;
        sa_status) SA_STATUS="$f2" ;;
        sa_invoker) SA_INVOKER="$f2" ;;
        pubsub_agent) PUBSUB_AGENT="$f2" ;;
        topic) TOPIC="$f2" ;;
        dead_topic) DEAD_TOPIC="$f2" ;;
        subscription) SUBSCRIPTION="$f2" ;;
        dead_subscription) DEAD_SUBSCRIPTION="$f2" ;;
        max_delivery_attempts) MAX_DELIVERY_ATTEMPTS="$f2" ;;
        ack_deadline) ACK_DEADLINE="$f2" ;;
        message_ordering) MESSAGE_ORDERING="$f2" ;;
        api_function) API_FUNCTION="$f2" ;;
        status_function) STATUS_FUNCTION="$f2" ;;
        api_url) API_URL="$f2" ;;
        push_endpoint) PUSH_ENDPOINT="$f2" ;;
        push_audience) PUSH_AUDIENCE="$f2" ;;
        ingest_url) INGEST_URL="$f2" ;;
        sa_load) SA_LOAD="$f2" ;;
        load_function) LOAD_FUNCTION="$f2" ;;
        load_subscription) LOAD_SUBSCRIPTION="$f2" ;;
        load_push_endpoint) LOAD_PUSH_ENDPOINT="$f2" ;;
        load_push_audience) LOAD_PUSH_AUDIENCE="$f2" ;;
        dataset) DATASET="$f2" ;;
        dataset_location) DATASET_LOCATION="$f2" ;;
      esac
      ;;
    queue)
      Q_NAME+=("$f2") Q_RATE+=("$f3") Q_CONCURRENT+=("$f4") Q_ATTEMPTS+=("$f5")
      Q_MIN_BACKOFF+=("$f6") Q_MAX_BACKOFF+=("$f7") Q_DOUBLINGS+=("$f8")
      ;;
    function)
      F_KIND+=("$f1") F_NAME+=("$f2") F_ENTRY+=("$f3") F_MEMORY+=("$f4") F_TIMEOUT+=("$f5")
      F_MAX+=("$f6") F_ENV+=("$f8") F_SECRETS+=("$f9")
      ;;
    secret) S_SOURCE+=("$f1") S_NAME+=("$f2") S_ACCOUNT+=("$f4") ;;
    index) IX_COLLECTION+=("$f1") IX_FIELDS+=("$f2") ;;
    ttl) TTL_GROUP+=("$f1") TTL_FIELD+=("$f2") ;;
    unindexed) NOIX_GROUP+=("$f1") NOIX_FIELD+=("$f2") ;;
    schedule) SCHEDULE_LINES+=("$f1: $f2 ($f3)") ;;
  esac
done <<<"$PLAN"
[[ -n "$SA_INVOKER" && -n "$TOPIC" && -n "$API_URL" && ${#F_NAME[@]} -gt 0 ]] ||
  die "python -m common.ops.deploy_plan printed an incomplete plan"

# -------------------------------------------------------------------------------- service accounts
say "service accounts"
for pair in "$SA_API:api function: submits jobs and enqueues tasks" \
  "$SA_INGEST:ingest functions: fetch, land data, publish events" \
  "$SA_STATUS:status function: applies job events to Firestore" \
  "$SA_INVOKER:OIDC identity of Cloud Tasks, Cloud Scheduler and the Pub/Sub push"; do
  email="${pair%%:*}"
  DESCRIBE=(gcloud iam service-accounts describe "$email" --project="$PROJECT")
  CREATE=(gcloud iam service-accounts create "${email%%@*}" --project="$PROJECT"
    --display-name="Tributary ${pair#*:}")
  ensure
done

# ------------------------------------------------------------------------------ storage, Firestore
say "output bucket gs://$BUCKET"
DESCRIBE=(gcloud storage buckets describe "gs://$BUCKET" --project="$PROJECT")
CREATE=(gcloud storage buckets create "gs://$BUCKET" --project="$PROJECT" --location="$REGION"
  --uniform-bucket-level-access --public-access-prevention)
ensure

say "Firestore"
DESCRIBE=(gcloud firestore databases describe --database=\(default\) --project="$PROJECT")
CREATE=(gcloud firestore databases create --database=\(default\) --project="$PROJECT"
  --location="$FIRESTORE_LOCATION" --type=firestore-native)
ensure
if ((!DRY_RUN)); then
  db_type="$(gcloud firestore databases describe --database='(default)' --project="$PROJECT" --format='value(type)')"
  [[ "$db_type" == "FIRESTORE_NATIVE" ]] ||
    die "the (default) database of $PROJECT is $db_type; Tributary needs Firestore in Native mode"
fi
# Every index the queries need (common/gcp/firestore/indexes.py); without one, Firestore refuses the query.
for i in "${!IX_FIELDS[@]}"; do
  IX_CONFIG=()
  IFS=, read -ra IX_SPECS <<<"${IX_FIELDS[$i]}"
  for spec in "${IX_SPECS[@]}"; do
    IX_CONFIG+=(--field-config="field-path=${spec%%:*},order=${spec#*:}")
  done
  run_unless_exists gcloud firestore indexes composite create --project="$PROJECT" --database=\(default\) \
    --collection-group="${IX_COLLECTION[$i]}" --query-scope=COLLECTION "${IX_CONFIG[@]}" --async
done
# TTL policies (common/gcp/firestore/codec.py): jobs, event markers and parts are deleted once their expire_at
# (written TRIBUTARY_RETENTION_DAYS after their last change) has passed; run again, it asks for the same state.
for i in "${!TTL_GROUP[@]}"; do
  run gcloud firestore fields ttls update "${TTL_FIELD[$i]}" --project="$PROJECT" --database=\(default\) \
    --collection-group="${TTL_GROUP[$i]}" --enable-ttl --async
done
# The maps of a job's markers and load reports are never queried (common/gcp/firestore/markers.py): no
# single-field index on them, so a marker written is one index entry less per field, not dozens more.
for i in "${!NOIX_GROUP[@]}"; do
  run gcloud firestore indexes fields update "${NOIX_FIELD[$i]}" --project="$PROJECT" --database=\(default\) \
    --collection-group="${NOIX_GROUP[$i]}" --disable-indexes --async
done

# ------------------------------------------------------------------------------------------ Pub/Sub
say "Pub/Sub topics"
for topic in "$TOPIC" "$DEAD_TOPIC"; do
  DESCRIBE=(gcloud pubsub topics describe "$topic" --project="$PROJECT")
  CREATE=(gcloud pubsub topics create "$topic" --project="$PROJECT")
  ensure
done
# Messages dead-lettered to a topic with no subscription are lost: keep them a week for inspection.
DESCRIBE=(gcloud pubsub subscriptions describe "$DEAD_SUBSCRIPTION" --project="$PROJECT")
CREATE=(gcloud pubsub subscriptions create "$DEAD_SUBSCRIPTION" --project="$PROJECT" --topic="$DEAD_TOPIC"
  --message-retention-duration=7d --expiration-period=never)
ensure

# ------------------------------------------------------------------------------------ Cloud Tasks
say "Cloud Tasks queues (one per source)"
for i in "${!Q_NAME[@]}"; do
  limits=(--max-dispatches-per-second="${Q_RATE[$i]}" --max-concurrent-dispatches="${Q_CONCURRENT[$i]}"
    --max-attempts="${Q_ATTEMPTS[$i]}" --min-backoff="${Q_MIN_BACKOFF[$i]}"
    --max-backoff="${Q_MAX_BACKOFF[$i]}" --max-doublings="${Q_DOUBLINGS[$i]}")
  DESCRIBE=(gcloud tasks queues describe "${Q_NAME[$i]}" --project="$PROJECT" --location="$REGION")
  CREATE=(gcloud tasks queues create "${Q_NAME[$i]}" --project="$PROJECT" --location="$REGION" "${limits[@]}")
  UPDATE=(gcloud tasks queues update "${Q_NAME[$i]}" --project="$PROJECT" --location="$REGION" "${limits[@]}")
  ensure
done

# ------------------------------------------------------------------------ the warehouse (load stage)
# The load function's account and the BigQuery dataset it writes, with least privilege: data editor on that
# dataset only (a SQL GRANT, the one command that grants on a dataset), job user on the project (a load or a
# query is a job, and jobs belong to a project), Firestore (its outcome goes on the job), read on the bucket.
say "BigQuery warehouse: dataset $DATASET and the load function's account"
DESCRIBE=(gcloud iam service-accounts describe "$SA_LOAD" --project="$PROJECT")
CREATE=(gcloud iam service-accounts create "${SA_LOAD%%@*}" --project="$PROJECT"
  --display-name="Tributary load function: loads job outputs into BigQuery")
ensure
DESCRIBE=(bq --project_id="$PROJECT" show --dataset "$PROJECT:$DATASET")
CREATE=(bq --project_id="$PROJECT" --location="$DATASET_LOCATION" mk --dataset
  --description="Tributary: one table per source and stream" "$PROJECT:$DATASET")
ensure
run_retry bq --project_id="$PROJECT" query --nouse_legacy_sql \
  "GRANT \`roles/bigquery.dataEditor\` ON SCHEMA \`$PROJECT.$DATASET\` TO \"serviceAccount:$SA_LOAD\""
run_retry gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA_LOAD" \
  --role=roles/bigquery.jobUser --condition=None --format=none
run_retry gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA_LOAD" \
  --role=roles/datastore.user --condition=None --format=none
run_retry gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --project="$PROJECT" \
  --member="serviceAccount:$SA_LOAD" --role=roles/storage.objectViewer --format=none

# ---------------------------------------------------------------------------------------- secrets
# Only names: the values are set beforehand (docs/deploy.md) and never pass through this script.
if ((${#S_NAME[@]})); then
  say "secrets (names only)"
  missing=()
  for i in "${!S_NAME[@]}"; do
    check=(gcloud secrets versions describe latest --secret="${S_NAME[$i]}" --project="$PROJECT"
      --format=value\(state\))
    show "$(quote "${check[@]}")"
    if ((!DRY_RUN)) && [[ "$("${check[@]}" 2>/dev/null || true)" != "ENABLED" ]]; then
      missing+=("${S_NAME[$i]} (for ${S_SOURCE[$i]})")
    fi
  done
  if ((${#missing[@]})); then
    printf 'deploy.sh: these secrets have no enabled version in %s:\n' "$PROJECT" >&2
    printf '  %s\n' "${missing[@]}" >&2
    printf 'Set each once (the value is read from stdin, not the command line):\n' >&2
    printf '  gcloud secrets create NAME --project=%s --replication-policy=automatic\n' "$PROJECT" >&2
    printf '  gcloud secrets versions add NAME --project=%s --data-file=-   # type the value, then Ctrl-D\n' "$PROJECT" >&2
    exit 1
  fi
fi

# ------------------------------------------------------------------------------------ IAM (before)
say "IAM: least-privilege roles"
project_role() {
  run_retry gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$1" --role="$2" \
    --condition=None --format=none
}
project_role "$SA_API" roles/datastore.user
project_role "$SA_STATUS" roles/datastore.user
project_role "$SA_INGEST" roles/datastore.viewer
# The api (jobs) and ingest (fan-out of parts) mint OIDC tokens as the invoker on the tasks they create.
for sa in "$SA_API" "$SA_INGEST"; do
  run_retry gcloud iam service-accounts add-iam-policy-binding "$SA_INVOKER" --project="$PROJECT" \
    --member="serviceAccount:$sa" --role=roles/iam.serviceAccountUser --condition=None --format=none
done
# Pub/Sub signs the push's OIDC token as the invoker.
run_retry gcloud iam service-accounts add-iam-policy-binding "$SA_INVOKER" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/iam.serviceAccountTokenCreator --condition=None --format=none
# Tasks are created per queue: the api (jobs, the reaper's re-enqueue) and ingest (parts). The reaper,
# which runs in the api, also lists a queue's tasks before it declares a silent job dead. The api deletes a
# cancelled job's tasks, and pauses, resumes and purges a queue (POST /v1/queues/{source}:pause ...).
for i in "${!Q_NAME[@]}"; do
  for grant in "$SA_API roles/cloudtasks.enqueuer" "$SA_INGEST roles/cloudtasks.enqueuer" \
    "$SA_API roles/cloudtasks.viewer" "$SA_API roles/cloudtasks.taskDeleter" "$SA_API roles/cloudtasks.queueAdmin"; do
    run_retry gcloud tasks queues add-iam-policy-binding "${Q_NAME[$i]}" --project="$PROJECT" \
      --location="$REGION" --member="serviceAccount:${grant% *}" --role="${grant#* }" --format=none
  done
done
run_retry gcloud pubsub topics add-iam-policy-binding "$TOPIC" --project="$PROJECT" \
  --member="serviceAccount:$SA_INGEST" --role=roles/pubsub.publisher --format=none
run_retry gcloud pubsub topics add-iam-policy-binding "$DEAD_TOPIC" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher --format=none
run_retry gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --project="$PROJECT" \
  --member="serviceAccount:$SA_INGEST" --role=roles/storage.objectAdmin --format=none
for i in "${!S_NAME[@]}"; do
  run_retry gcloud secrets add-iam-policy-binding "${S_NAME[$i]}" --project="$PROJECT" \
    --member="serviceAccount:${S_ACCOUNT[$i]}" --role=roles/secretmanager.secretAccessor --format=none
done

# -------------------------------------------------------------------------------------- functions
say "staging the function sources"
if ((DRY_RUN)); then
  STAGE_DIR="${TMPDIR:-/tmp}/tributary-deploy.XXXXXX"
else
  STAGE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tributary-deploy.XXXXXX")"
  trap 'rm -rf "$STAGE_DIR"' EXIT
fi
staged=" "
for entry in "${F_ENTRY[@]}"; do
  [[ "$staged" == *" $entry "* ]] && continue
  run "$PYTHON" -m common.ops.deploy_plan --stage "$entry" --dest "$STAGE_DIR/$entry"
  staged+="$entry "
done

say "functions (2nd gen, HTTP, authenticated)"
for i in "${!F_NAME[@]}"; do
  access=--no-allow-unauthenticated
  case "${F_KIND[$i]}" in
    api)
      runtime_sa="$SA_API"
      ((!PUBLIC_API)) || access=--allow-unauthenticated
      ;;
    status) runtime_sa="$SA_STATUS" ;;
    load) runtime_sa="$SA_LOAD" ;;
    *) runtime_sa="$SA_INGEST" ;;
  esac
  deploy=(gcloud functions deploy "${F_NAME[$i]}" --project="$PROJECT" --region="$REGION" --gen2
    --runtime="$RUNTIME" --source="$STAGE_DIR/${F_ENTRY[$i]}" --entry-point="${F_ENTRY[$i]}"
    --trigger-http "$access" --service-account="$runtime_sa"
    --memory="${F_MEMORY[$i]}" --timeout="${F_TIMEOUT[$i]}" --max-instances="${F_MAX[$i]}"
    --set-env-vars="${F_ENV[$i]}" --serve-all-traffic-latest-revision)
  if [[ "${F_SECRETS[$i]}" == "-" ]]; then
    deploy+=(--clear-secrets)
  else
    deploy+=(--set-secrets="${F_SECRETS[$i]}")
  fi
  [[ -z "$BUILD_SA" ]] || deploy+=(--build-service-account="$BUILD_SA")
  run "${deploy[@]}"
done

say "who may call the functions"
for name in "${F_NAME[@]}"; do
  run_retry gcloud functions add-invoker-policy-binding "$name" --project="$PROJECT" --region="$REGION" \
    --member="serviceAccount:$SA_INVOKER" --format=none
done
for member in ${API_INVOKERS[@]+"${API_INVOKERS[@]}"}; do
  run_retry gcloud functions add-invoker-policy-binding "$API_FUNCTION" --project="$PROJECT" \
    --region="$REGION" --member="$member" --format=none
done

if ((!DRY_RUN)); then
  # The queues and the push call the functions at their deterministic run.app URLs; check they exist.
  for name in "${F_NAME[@]}"; do
    expected="https://$name-$PROJECT_NUMBER.$REGION.run.app"
    urls="$(gcloud run services describe "$name" --project="$PROJECT" --region="$REGION" --format=json)"
    [[ "$urls" == *"$expected"* ]] ||
      die "$name has no URL $expected (Tributary needs the deterministic run.app URLs; see docs/deploy.md)"
  done
fi

# --------------------------------------------------------------------------- push subscription
say "push subscription $SUBSCRIPTION -> $STATUS_FUNCTION"
push=(--push-endpoint="$PUSH_ENDPOINT" --push-auth-service-account="$SA_INVOKER"
  --push-auth-token-audience="$PUSH_AUDIENCE" --dead-letter-topic="$DEAD_TOPIC"
  --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" --ack-deadline="$ACK_DEADLINE"
  --min-retry-delay=10s --max-retry-delay=600s)
DESCRIBE=(gcloud pubsub subscriptions describe "$SUBSCRIPTION" --project="$PROJECT")
# One job's events one after another (they carry the job id as ordering key): Pub/Sub takes it at creation only.
ordering=()
[[ "$MESSAGE_ORDERING" != "true" ]] || ordering=(--enable-message-ordering)
CREATE=(gcloud pubsub subscriptions create "$SUBSCRIPTION" --project="$PROJECT" --topic="$TOPIC"
  --expiration-period=never ${ordering[@]+"${ordering[@]}"} "${push[@]}")
UPDATE=(gcloud pubsub subscriptions update "$SUBSCRIPTION" --project="$PROJECT" "${push[@]}")
ensure
if ((!DRY_RUN)) && [[ "$MESSAGE_ORDERING" == "true" ]]; then
  ordered="$(gcloud pubsub subscriptions describe "$SUBSCRIPTION" --project="$PROJECT" \
    --format='value(enableMessageOrdering)')"
  if [[ "$ordered" != "True" ]]; then
    printf 'deploy.sh: warning: %s was created without message ordering, which Pub/Sub cannot turn on later.\n' \
      "$SUBSCRIPTION" >&2
    printf '  Job events are still applied correctly, but the events of one job contend in Firestore.\n' >&2
    printf '  To enable it, when no events are in flight: gcloud pubsub subscriptions delete %s --project=%s\n' \
      "$SUBSCRIPTION" "$PROJECT" >&2
    printf '  and run deploy.sh again.\n' >&2
  fi
fi
# Dead-lettering acks the message on the source subscription as the Pub/Sub service agent.
run_retry gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber --format=none

# ---------------------------------------------------------------- push subscription of the load stage
# As status-push: OIDC as the invoker, a dead-letter topic, bounded retries; no ordering (loads are idempotent).
say "push subscription $LOAD_SUBSCRIPTION -> $LOAD_FUNCTION"
load_push=(--push-endpoint="$LOAD_PUSH_ENDPOINT" --push-auth-service-account="$SA_INVOKER"
  --push-auth-token-audience="$LOAD_PUSH_AUDIENCE" --dead-letter-topic="$DEAD_TOPIC"
  --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" --ack-deadline=600
  --min-retry-delay=10s --max-retry-delay=600s)
DESCRIBE=(gcloud pubsub subscriptions describe "$LOAD_SUBSCRIPTION" --project="$PROJECT")
CREATE=(gcloud pubsub subscriptions create "$LOAD_SUBSCRIPTION" --project="$PROJECT" --topic="$TOPIC"
  --expiration-period=never "${load_push[@]}")
UPDATE=(gcloud pubsub subscriptions update "$LOAD_SUBSCRIPTION" --project="$PROJECT" "${load_push[@]}")
ensure
run_retry gcloud pubsub subscriptions add-iam-policy-binding "$LOAD_SUBSCRIPTION" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber --format=none

# ------------------------------------------------------------------------------------- schedules
if ((SCHEDULES)); then
  say "Cloud Scheduler: schedules as code"
  for line in ${SCHEDULE_LINES[@]+"${SCHEDULE_LINES[@]}"}; do
    printf '  %s\n' "$line" >&2
  done
  sync=(env -u CLOUD_SCHEDULER_EMULATOR_HOST -u TRIBUTARY_SCHEDULER_EMULATOR_HOST
    TRIBUTARY_PROJECT="$PROJECT" TRIBUTARY_REGION="$REGION" TRIBUTARY_INVOKER_SERVICE_ACCOUNT="$SA_INVOKER"
    "$TRIBUTARY_CLI" schedule sync --prune --api-url "$API_URL")
  [[ -z "$SCHEDULE_CONFIG" ]] || sync+=(--config "$SCHEDULE_CONFIG")
  run "${sync[@]}"
fi

say "done"
if ((PUBLIC_API)); then
  printf 'api:    %s (send X-API-Key, or an ID token with this audience)\n' "$API_URL" >&2
else
  printf 'api:    %s (send an ID token with this audience)\n' "$API_URL" >&2
fi
printf 'ingest: %s\n' "$INGEST_URL" >&2
printf 'data:   %s\n' "$OUTPUT_URI" >&2
