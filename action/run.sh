#!/usr/bin/env bash
# The GitHub Action's steps (action.yml calls this; tests/it/action.rs runs it locally).
#
#   1. validate the spec, problems as annotations on its lines (no API key needed);
#   2. plan against the manifest (offline), markdown into the job summary, outputs set;
#   3. optionally post or update ONE pull-request comment, found by its stable marker
#      (skipped when nothing changes and no comment exists yet);
#   4. optionally `build --dry-run`, or apply (`build --update`, needs NIMRIZ_API_KEY).
#
# Inputs arrive as environment variables (INPUT_*), as GitHub passes them to actions.
# NIMRIZ_MATRIX is the binary (default: nimriz-matrix on PATH); NIMRIZ_GH is the GitHub CLI
# (default: gh) — tests point it at a stub, so nothing here has to reach GitHub.
set -uo pipefail

bin="${NIMRIZ_MATRIX:-nimriz-matrix}"
gh="${NIMRIZ_GH:-gh}"
spec="${INPUT_SPEC:?input spec is required}"
manifest="${INPUT_MANIFEST:-}"
comment="${INPUT_COMMENT:-false}"
dry_run="${INPUT_DRY_RUN:-false}"
apply="${INPUT_APPLY:-false}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
outputs="${GITHUB_OUTPUT:-/dev/null}"
# Files the workflow may read afterwards (outputs name them): kept in the runner's temp.
work="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/nimriz-matrix.XXXXXX")"

manifest_args=()
if [ -n "$manifest" ]; then manifest_args=(--manifest "$manifest"); fi

# 1. Validate: annotations go to the log, where GitHub turns them into line comments.
"$bin" validate "$spec" --message-format github
validate_code=$?
echo "validate-exit-code=$validate_code" >>"$outputs"
if [ "$validate_code" -ne 0 ]; then
  {
    echo "### nimriz-matrix: \`$spec\` has problems"
    echo
    echo "See the annotations on the spec's lines; nothing was planned or sent."
  } >>"$summary"
  echo "changes=unknown" >>"$outputs"
  exit "$validate_code"
fi

# 2. Plan (offline): 0 no changes, 2 changes pending, 1 error.
"$bin" plan "$spec" "${manifest_args[@]}" --format markdown --detailed-exitcode \
  --message-format github >"$work/plan.md"
plan_code=$?
echo "plan-exit-code=$plan_code" >>"$outputs"
case "$plan_code" in
  0) echo "changes=false" >>"$outputs" ;;
  2) echo "changes=true" >>"$outputs" ;;
  *) echo "changes=unknown" >>"$outputs"
     echo "### nimriz-matrix: the plan for \`$spec\` failed (exit $plan_code)" >>"$summary"
     exit "$plan_code" ;;
esac

# One comment per spec, found again by this marker (the plan's own marker, or ours).
marker="<!-- nimriz-matrix plan: $spec -->"
{
  echo "$marker"
  cat "$work/plan.md"
} >"$work/comment.md"
cat "$work/comment.md" >>"$summary"
echo "plan-file=$work/comment.md" >>"$outputs"

# 3. The pull-request comment.
if [ "$comment" = "true" ] && [ -n "${PR_NUMBER:-}" ] && [ -n "${GITHUB_REPOSITORY:-}" ]; then
  existing="$("$gh" api "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" --paginate \
    --jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n 1)"
  if [ -n "$existing" ]; then
    "$gh" api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$existing" \
      -F "body=@$work/comment.md" >/dev/null
    echo "comment=updated" >>"$outputs"
  elif [ "$plan_code" -eq 2 ]; then
    "$gh" api --method POST "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" \
      -F "body=@$work/comment.md" >/dev/null
    echo "comment=created" >>"$outputs"
  else
    echo "comment=skipped" >>"$outputs"
  fi
fi

# 4. Dry run or apply.
if [ "$dry_run" = "true" ]; then
  "$bin" build "$spec" --dry-run --format csv -o "$work/links.csv" || exit $?
  echo "links-file=$work/links.csv" >>"$outputs"
fi
if [ "$apply" = "true" ]; then
  if [ -z "${NIMRIZ_API_KEY:-}" ]; then
    echo "::error title=nimriz-matrix::apply needs NIMRIZ_API_KEY (from a secret)"
    exit 2
  fi
  "$bin" build "$spec" "${manifest_args[@]}" --update --message-format github
  exit $?
fi
exit 0
