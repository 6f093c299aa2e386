#!/usr/bin/env bash
# Checks of deploy/ that promtool alone does not make (run by `make check-deploy`,
# after `promtool check rules` and `promtool test rules`):
#
#   - deploy/grafana/glmctl.json parses, has the datasource and instance
#     variables, unique panel ids, and every panel and query uses ${datasource};
#   - every PromQL expression of the dashboard parses: each, with Grafana's
#     variables replaced by values, becomes a recording rule of a throwaway
#     file that `promtool check rules` reads (no Prometheus module is vendored);
#   - every glmctl_* selector of the dashboard has instance=~"$instance";
#   - every glmctl_* metric named by the dashboard or the rules is one glmctl
#     exports (grepped from the Go sources), so a renamed metric fails here;
#   - every alert has a severity, a summary and a description, and is tested
#     in glmctl-rules.test.yml.
#
# Needs jq and promtool (Debian: apt-get install jq prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

dash=${DASHBOARD:-deploy/grafana/glmctl.json} # overridable, to try the checks on a broken copy
rules=${RULES:-deploy/prometheus/glmctl-rules.yml}
tests=${RULES_TEST:-deploy/prometheus/glmctl-rules.test.yml}

# Metrics the rules and dashboard may use before glmctl exports them: name,
# then why. An entry is moot once the metric is in the code.
pending=(
  "glmctl_guard_limits_store_up: exported once the Redis limits store exists, and only when limits_store is Redis"
)

for tool in jq promtool; do
  command -v "$tool" >/dev/null || { echo "check.sh: $tool not found (Debian: apt-get install jq prometheus)" >&2; exit 1; }
done

fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- the dashboard's JSON --------------------------------------------------
jq empty "$dash" || { echo "FAIL: $dash is not valid JSON" >&2; exit 1; }

jq -e '.schemaVersion >= 36 and (.uid | type == "string") and (.title | type == "string")' "$dash" >/dev/null ||
  bad "$dash: needs schemaVersion >= 36, a uid and a title"
jq -e '[.templating.list[] | select(.name == "datasource" and .type == "datasource" and .query == "prometheus")] | length == 1' "$dash" >/dev/null ||
  bad "$dash: needs a datasource variable (type datasource, query prometheus)"
jq -e '[.templating.list[] | select(.name == "instance" and .type == "query"
        and (.query | tostring | contains("label_values(glmctl_build_info, instance)")))] | length == 1' "$dash" >/dev/null ||
  bad "$dash: needs an instance variable from label_values(glmctl_build_info, instance)"
jq -e '[.panels[].id] | length == (unique | length)' "$dash" >/dev/null || bad "$dash: panel ids are not unique"
jq -e '[.panels[] | select(.type != "row") | select(.gridPos.w == null or .gridPos.h == null)] | length == 0' "$dash" >/dev/null ||
  bad "$dash: a panel has no gridPos"
# Every panel, query and annotation reads the chosen data source.
while IFS= read -r t; do bad "$dash: panel \"$t\" does not use \${datasource}"; done < <(
  jq -r '.panels[] | select(.type != "row")
    | select(.datasource.uid != "${datasource}" or ([.targets[]? | select(.datasource.uid != "${datasource}")] | length > 0))
    | .title' "$dash")
while IFS= read -r t; do bad "$dash: annotation \"$t\" does not use \${datasource}"; done < <(
  jq -r '.annotations.list[] | select(.expr != null and .datasource.uid != "${datasource}") | .name' "$dash")
jq -e '[.panels[] | select(.type != "row") | select((.targets // []) | length == 0)] | length == 0' "$dash" >/dev/null ||
  bad "$dash: a panel has no query"

# --- the dashboard's expressions -------------------------------------------
# One JSON string per line: every "expr" anywhere (panels, annotations).
jq -c '.. | objects | select(has("expr")) | .expr' "$dash" >"$tmp/exprs"
n=$(wc -l <"$tmp/exprs")
[ "$n" -gt 0 ] || bad "$dash: no expressions found"

{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  i=0
  while IFS= read -r e; do
    i=$((i + 1))
    # Grafana's variables, as Grafana would fill them in.
    e=${e//'$__rate_interval'/5m}
    e=${e//'$__interval'/1m}
    e=${e//'$__range'/1h}
    e=${e//'$instance'/.*}
    echo "      - record: dashboard:expr_$i"
    echo "        expr: $e" # a JSON string is a YAML string
  done <"$tmp/exprs"
} >"$tmp/dashboard-rules.yml"
if ! promtool check rules "$tmp/dashboard-rules.yml" >"$tmp/promtool.out" 2>&1; then
  cat "$tmp/promtool.out" >&2
  bad "$dash: an expression is not valid PromQL (dashboard:expr_N is the Nth expr of the file)"
fi
grep -qE '\$__[a-z_]+' "$tmp/dashboard-rules.yml" && bad "$dash: an expression uses a Grafana variable check.sh does not fill in"

# Every selector of a glmctl_* metric is limited to the chosen instances.
while IFS= read -r e; do
  e=$(jq -r . <<<"$e")
  while IFS= read -r sel; do
    [ -z "$sel" ] && continue
    grep -qF 'instance=~"$instance"' <<<"$sel" || bad "$dash: selector $sel lacks instance=~\"\$instance\" in: $e"
  done < <(grep -oE 'glmctl_[a-zA-Z0-9_]+(\{[^}]*\})?' <<<"$e" || true)
done <"$tmp/exprs"

# --- metric names ----------------------------------------------------------
# What glmctl exports: metric names in the Go sources (tests left out), and
# the GPU collector's names, built as "glmctl_gpu_"+name.
find pkg internal cmd -name '*.go' ! -name '*_test.go' -print0 |
  xargs -0 grep -ohE '"glmctl_[a-z0-9_]+"' | tr -d '"' >"$tmp/known"
grep -ohE 'desc\("[a-z0-9_]+"' internal/gpu/collector.go | sed -E 's/desc\("([a-z0-9_]+)"/glmctl_gpu_\1/' >>"$tmp/known"
sort -u -o "$tmp/known" "$tmp/known"
grep -qx glmctl_guard_requests_total "$tmp/known" && grep -qx glmctl_gpu_xid_errors_total "$tmp/known" ||
  bad "internal: could not find glmctl's metric names in the sources (check.sh needs updating)"

used() { grep -ohE 'glmctl_[a-z0-9_]+' "$@" | sed -E 's/_(bucket|sum|count)$//' | sort -u; }
for f in "$dash" "$rules"; do
  for m in $(used "$f"); do
    grep -qx "$m" "$tmp/known" && continue
    why=""
    for p in "${pending[@]}"; do
      [ "${p%%:*}" = "$m" ] && why=${p#*: }
    done
    if [ -n "$why" ]; then
      echo "note: $f uses $m, not exported yet: $why"
    else
      bad "$f: $m is not a metric glmctl exports"
    fi
  done
done

# --- alerts ----------------------------------------------------------------
# Each alert block (from "- alert:" to the next rule) has a severity, a
# summary and a description.
while IFS= read -r a; do bad "$rules: alert $a lacks a severity, summary or description"; done < <(awk '
  function done_() {
    if (name != "" && !(sev && sum && desc)) { print name; }
    name = ""; sev = sum = desc = 0
  }
  /^ *- (alert|record):/ { done_() }
  /^ *- alert:/ { name = $3 }
  /^ *severity:/ { sev = 1 }
  /^ *summary:/ { sum = 1 }
  /^ *description:/ { desc = 1 }
  END { done_() }
' "$rules")
alerts=$(grep -oE '^ *- alert: *[A-Za-z0-9_]+' "$rules" | awk '{print $3}')
[ -n "$alerts" ] || bad "$rules: no alerts found"
for a in $alerts; do
  grep -qE "^ *alertname: *$a *$" "$tests" || bad "$tests: alert $a is never tested"
done

if [ "$fail" != 0 ]; then
  exit 1
fi
echo "deploy: dashboard ($n expressions), rules ($(wc -w <<<"$alerts") alerts) checked"
